"""The gateway's local provider serving a base model and a LoRA adapter, for ``gpu_check.py``.

The gateway app runs in this process on a loopback port (uvicorn in a thread, as the demo
and the tests run it) over the registry that ``gpu_jobs.py setup`` and ``local`` filled; the
official ``openai`` SDK streams chat completions from it. For each request: time to first
token (first content chunk) and tokens/s; requests one at a time, then four at once. Every
answer is exactly ``--max-tokens`` tokens (the benchmark model has no end-of-sequence id),
checked against the provider's count of decoding steps.

    .venv/bin/python tests/benchmarks/gpu_serving.py --work W --out W/serving.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_jobs import imported_distributions  # noqa: E402

QUESTION = [{"role": "user", "content": "What colour is the sky over the capital city?"}]


def one_stream(client: Any, model: str, max_tokens: int) -> dict[str, float]:
    started = time.perf_counter()
    first: float | None = None
    chunks = 0
    usage = None
    stream = client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            if first is None:
                first = time.perf_counter()
    ended = time.perf_counter()
    assert first is not None, "no content came back"
    return {
        "ttft_ms": (first - started) * 1000,
        "seconds": ended - started,
        "tokens_per_s": max_tokens / (ended - started),
        "decode_tokens_per_s": (max_tokens - 1) / max(ended - first, 1e-9),
        "chunks": chunks,
        "usage_completion_tokens": usage.completion_tokens if usage else -1,
    }


def run_concurrent(client: Any, model: str, n: int, max_tokens: int) -> dict[str, Any]:
    results: list[dict[str, float]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(one_stream(client, model, max_tokens))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    ttfts = sorted(r["ttft_ms"] for r in results)
    return {
        "requests": n, "wall_s": wall,
        "ttft_ms_median": statistics.median(ttfts), "ttft_ms_max": ttfts[-1],
        "tokens_per_s_per_request": statistics.median(r["tokens_per_s"] for r in results),
        "aggregate_tokens_per_s": n * max_tokens / wall,
    }  # fmt: skip


def sequential(client: Any, model: str, n: int, max_tokens: int) -> dict[str, Any]:
    started = time.perf_counter()
    results = [one_stream(client, model, max_tokens) for _ in range(n)]
    wall = time.perf_counter() - started
    return {
        "requests": n, "wall_s": wall,
        "ttft_ms_median": statistics.median(r["ttft_ms"] for r in results),
        "ttft_ms_max": max(r["ttft_ms"] for r in results),
        "tokens_per_s_per_request": statistics.median(r["tokens_per_s"] for r in results),
        "decode_tokens_per_s": statistics.median(r["decode_tokens_per_s"] for r in results),
        "aggregate_tokens_per_s": n * max_tokens / wall,
        "usage_completion_tokens": results[-1]["usage_completion_tokens"],
    }  # fmt: skip


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import openai

    from lockgate.gateway.app import create_app
    from lockgate.gateway.background import ServerThread
    from lockgate.gateway.config import LockgateSettings
    from lockgate.gateway.settings import GatewaySettings
    from lockgate.registry import RegistrySettings

    registry_settings = RegistrySettings(data_dir=args.work / "registry")
    local = {"cache_dir": str(args.work / "serving-cache")}
    settings = LockgateSettings(
        registry=registry_settings, gateway=GatewaySettings.model_validate({"local": local})
    )
    adapter, base = f"registry:{args.adapter}", f"registry:{args.base}"
    out: dict[str, Any] = {"adapter": adapter, "base": base, "max_tokens": args.max_tokens}
    with ServerThread(create_app(settings)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                               timeout=args.request_timeout)  # fmt: skip
        state = server.server.config.app.state.gateway
        started = time.perf_counter()
        client.chat.completions.create(model=adapter, messages=QUESTION, max_tokens=2)
        out["load_s"] = time.perf_counter() - started  # fetch, load the base, attach
        one_stream(client, base, 8)  # warm-up of both paths
        one_stream(client, adapter, 8)
        bases = state.providers["local"]._bases  # the provider's loaded bases
        before = sum(b.generated_tokens for b in bases.values())
        out["adapter_c1"] = sequential(client, adapter, args.repeat, args.max_tokens)
        out["adapter_c4"] = run_concurrent(client, adapter, 4, args.max_tokens)
        out["base_c1"] = sequential(client, base, 1, args.max_tokens)
        generated = sum(b.generated_tokens for b in bases.values()) - before
        expected = (args.repeat + 4 + 1) * args.max_tokens
        out["generated_tokens"] = generated
        out["tokens_as_expected"] = generated == expected
        out["bases_loaded"] = len(bases)
        out["device"] = next(iter(bases.values())).device
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="the gpu_check run's folder")
    p.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    p.add_argument("--adapter", default="gpu-check-local@1")
    p.add_argument("--base", default="gpu-check-base@1")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeat", type=int, default=3, help="sequential requests")
    p.add_argument("--request-timeout", type=float, default=300.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    args = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    figures = measure(args)
    figures["process_s"] = time.perf_counter() - started
    if torch.cuda.is_available():
        figures["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
    figures["litellm_imported"] = "litellm" in sys.modules
    figures["distributions"] = imported_distributions()
    args.out.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
