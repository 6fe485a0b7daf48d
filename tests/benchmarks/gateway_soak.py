"""Soak: N minutes at a steady rate through keys with limits, tracing and call records on.

Starts the stub upstream (``gateway_stub.py``, its own process, also the OTLP sink) and
``lockgate serve`` (one worker) on a fresh embedded registry with ``--keys`` virtual keys,
each with rpm, tpm, max_parallel and budget limits set well above the load (so every
request goes through the limiter and none is refused). Then sends ``--rate`` requests/s for
``--minutes`` (a fifth of them streamed), each with a key in turn, and reports:

- unexpected errors (any answer but 200, or a transport error): should be 0;
- the gateway's resident memory every ``--sample-s`` seconds: should be flat;
- calls answered (``lockgate_requests_total``) against call records written + dropped:
  should be equal (every call recorded or counted as dropped).

    .venv/bin/python tests/benchmarks/gateway_soak.py [--minutes 10] [--rate 100] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import BIN, free_port, metric, rss_mb, start, stop, wait_ready

MESSAGES = [{"role": "user", "content": "hi"}]


async def drive(
    url: str, keys: list[str], rate: float, seconds: float, sample_s: float, pid: int
) -> dict[str, object]:
    errors: dict[str, int] = {}
    answered = 0
    rss: list[tuple[int, float]] = []
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(i: int) -> None:
            nonlocal answered
            stream = i % 5 == 0
            body = {"model": "bench", "messages": MESSAGES, "stream": stream}
            headers = {"authorization": f"Bearer {keys[i % len(keys)]}"}
            try:
                async with http.post(url, json=body, headers=headers) as resp:
                    content = await resp.read()
                    if resp.status != 200:
                        kind = f"HTTP {resp.status}: {content[:120]!r}"
                    elif stream and b"[DONE]" not in content:
                        kind = "stream without [DONE]"
                    else:
                        answered += 1
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                kind = type(exc).__name__
            errors[kind] = errors.get(kind, 0) + 1

        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        next_sample = 0.0
        i = 0
        while (elapsed := time.monotonic() - started) < seconds:
            if elapsed >= next_sample:
                rss.append((int(elapsed), rss_mb(pid)))
                next_sample += sample_s
            due = started + i / rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)
        rss.append((int(time.monotonic() - started), rss_mb(pid)))
    return {"sent": i, "answered": answered, "errors": errors, "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--redis", default=None, help="share limits through this Redis URL")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lockgate-soak-"))
    procs = []
    try:
        stub_port = free_port()
        procs.append(
            start([sys.executable, "tests/benchmarks/gateway_stub.py", "--port", str(stub_port)])
        )
        stub = f"http://127.0.0.1:{stub_port}"
        wait_ready(stub + "/")

        from lockgate.registry import Registry, RegistrySettings

        per_key_rpm = int(args.rate * 60 / args.keys * 2) + 10
        with Registry(RegistrySettings(data_dir=tmp / "data")) as reg:
            keys = [
                reg.keys.create(
                    f"soak-{n}",
                    rpm=per_key_rpm,
                    tpm=per_key_rpm * 20,
                    max_parallel=64,
                    budget_usd=1000.0,
                ).secret
                for n in range(args.keys)
            ]
        deployment = {"provider": "openai", "model": "bench-model",
                      "api_base": stub + "/v1", "api_key": "sk-x"}  # fmt: skip
        gateway_config: dict[str, object] = {
            "routes": {"bench": {"deployments": [deployment]}},
            "tracing": {"otlp_endpoint": stub},
        }
        if args.redis:
            gateway_config["redis_url"] = args.redis
        config = {"registry": {"data_dir": str(tmp / "data")}, "gateway": gateway_config}
        (tmp / "lockgate.yaml").write_text(json.dumps(config))
        port = free_port()
        gateway = start(
            [str(BIN / "lockgate"), "serve", "-c", str(tmp / "lockgate.yaml"), "--port",
             str(port), "--workers", "1"],
            log=tmp / "lockgate.log",
        )  # fmt: skip
        procs.append(gateway)
        gw = f"http://127.0.0.1:{port}"
        wait_ready(gw + "/readyz")
        result = asyncio.run(
            drive(gw + "/v1/chat/completions", [k for k in keys if k], args.rate,
                  args.minutes * 60, args.sample_s, gateway.pid)
        )  # fmt: skip
        time.sleep(3)  # the last call records are written
        text = httpx.get(gw + "/metrics").text
        calls = metric(text, "lockgate_requests_total")
        written = metric(text, "lockgate_call_records_written_total")
        dropped = metric(text, "lockgate_call_records_dropped_total")
        rss = result["rss"]
        assert isinstance(rss, list)
        summary = {
            "minutes": args.minutes, "rate": args.rate, "keys": args.keys,
            "limiter": "redis" if args.redis else "memory",
            "sent": result["sent"], "answered_200": result["answered"],
            "unexpected_errors": sum(result["errors"].values()),  # type: ignore[attr-defined]
            "errors": result["errors"], "calls": calls, "records_written": written,
            "records_dropped": dropped, "rss_mb": rss,
        }  # fmt: skip
        if args.json:
            print(json.dumps(summary, indent=2))
            return
        print(
            f"\nlockgate soak: {args.minutes:g} min at {args.rate:g} req/s through "
            f"{args.keys} limited keys ({summary['limiter']} limiter), tracing + call records"
        )
        print(f"sent {result['sent']}, answered 200: {result['answered']}")
        print(f"unexpected errors: {summary['unexpected_errors']} {result['errors'] or ''}")
        print("RSS (MB) over time: " + ", ".join(f"{t}s {mb:.0f}" for t, mb in rss))
        first, last = rss[1][1] if len(rss) > 1 else rss[0][1], rss[-1][1]
        print(f"RSS after the first sample to the end: {first:.0f} -> {last:.0f} MB")
        print(
            f"calls {calls:.0f} = records written {written:.0f} + dropped {dropped:.0f}: "
            f"{'yes' if calls == written + dropped else 'NO'}"
        )
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
