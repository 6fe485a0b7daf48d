"""Benchmark: start-up costs on the user's path.

    .venv/bin/python tests/benchmarks/cli_startup.py [--n 15] [--serve-n 3] [--source DIR]

Prints the median wall time (and, for the short commands, the median CPU time of the
process: on a busy machine the wall time is mostly waiting for a core) of

- ``lockgate --help`` (target: under 0.3 s),
- ``lockgate prompt list`` on an embedded registry holding one prompt (under 0.6 s),
- ``lockgate model register … --flavor sklearn`` of a file already registered, which answers
  "unchanged" (under 2 s; skipped without the ``sklearn`` extra),
- the first litellm-routed chat completion after ``lockgate serve`` reports ready on
  ``/readyz`` (under 1 s): each run starts a gateway whose one route goes through litellm to
  a loopback OpenAI-compatible stub (``gateway_stub.py``), waits for ``/readyz``, and times
  the first call; ready-after is the time from starting the process to ``/readyz`` 200,

with ``python -c pass`` and ``python3 -m timeit "sum(range(10000))"`` for reference.
``--source DIR`` runs another copy of the packages (``DIR/lockgate/{registry,…}``, e.g. a
``git archive`` of an older commit) through ``PYTHONPATH``, for before/after figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
STUB = str(Path(__file__).with_name("gateway_stub.py"))
HI = {"model": "bench", "messages": [{"role": "user", "content": "hi"}]}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(args: Sequence[str], n: int, env: dict[str, str]) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``n`` runs of a command that must succeed."""
    walls, cpus = [], []
    for _ in range(n):
        cpu0, t0 = _children_cpu(), time.perf_counter()
        subprocess.run(args, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - cpu0)
    return statistics.median(walls), statistics.median(cpus)


def timeit_reference() -> str:
    out = subprocess.run(
        ["python3", "-m", "timeit", "sum(range(10000))"], capture_output=True, text=True
    ).stdout.strip()
    return out.split(": ", 1)[-1]


def sklearn_model(path: Path) -> bool:
    """A small fitted estimator saved with skops (False: the sklearn extra is missing)."""
    code = (
        "import sys; import skops.io as sio; from sklearn.linear_model import LogisticRegression;"
        "m = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]],"
        " [0, 1, 1, 0]); sio.dump(m, sys.argv[1])"
    )
    return subprocess.run([sys.executable, "-c", code, str(path)]).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_status(url: str, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} not ready in time")


def post_chat(url: str) -> dict[str, object]:
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(HI).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        answer: dict[str, object] = json.loads(resp.read())
        return answer


def first_litellm_call(tmp: Path, env: dict[str, str], log: Path) -> tuple[float, float]:
    """(seconds from start to /readyz 200, seconds of the first call after that)."""
    stub_port, port = free_port(), free_port()
    stub = subprocess.Popen(
        [sys.executable, STUB, "--port", str(stub_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = tmp / "lockgate.yaml"
    config.write_text(
        "gateway:\n"
        "  routes:\n"
        "    bench:\n"
        "      deployments:\n"
        f"        - {{provider: openai, via: litellm, model: openai/bench-model,\n"
        f"           api_base: 'http://127.0.0.1:{stub_port}/v1', api_key: sk-bench}}\n"
    )
    try:
        wait_status(f"http://127.0.0.1:{stub_port}/v1/traces", time.monotonic() + 30, stub)
        with log.open("ab") as out:
            t0 = time.perf_counter()
            gateway = subprocess.Popen(
                [LOCKGATE, "-c", str(config), "serve", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                wait_status(url + "/readyz", time.monotonic() + 300, gateway)
                ready = time.perf_counter() - t0
                t1 = time.perf_counter()
                answer = post_chat(url)
                first = time.perf_counter() - t1
                assert answer["choices"], answer
            finally:
                gateway.terminate()
                gateway.wait(30)
    finally:
        stub.terminate()
        stub.wait(10)
    return ready, first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=15, help="runs of each CLI command")
    parser.add_argument("--serve-n", type=int, default=3, help="gateways started (0: none)")
    parser.add_argument("--source", type=Path, help="run DIR/lockgate/… instead (PYTHONPATH)")
    args = parser.parse_args()
    rows: list[tuple[str, float, float | None, float]] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = {**os.environ, "LOCKGATE_DATA_DIR": str(tmp / "data")}
        env.pop("LOCKGATE_CONFIG", None)
        if args.source is not None:
            env["PYTHONPATH"] = str(args.source.resolve())
        run = lambda *a: subprocess.run(  # noqa: E731
            [LOCKGATE, *a], env=env, check=True, capture_output=True, cwd=tmp
        )
        rows.append(("python -c pass", *measure([sys.executable, "-c", "pass"], args.n, env), 0))
        rows.append(("lockgate --help", *measure([LOCKGATE, "--help"], args.n, env), 0.3))
        prompt = tmp / "p.txt"
        prompt.write_text("hi {{ name }}")
        run("prompt", "push", "p", "--file", str(prompt))
        listing = measure([LOCKGATE, "prompt", "list"], args.n, env)
        rows.append(("lockgate prompt list", *listing, 0.6))
        skops_file = tmp / "model.skops"
        if sklearn_model(skops_file):
            register = [LOCKGATE, "model", "register", "clf", "--flavor", "sklearn",
                        "--path", str(skops_file)]  # fmt: skip
            cpu0, t0 = _children_cpu(), time.perf_counter()
            first = subprocess.run(register, env=env, check=True, capture_output=True, text=True)
            new = (time.perf_counter() - t0, _children_cpu() - cpu0)
            assert "registered clf@1" in first.stdout, first.stdout
            rows.append(("model register sklearn (new)", *new, 0))
            again = subprocess.run(register, env=env, check=True, capture_output=True, text=True)
            assert "unchanged" in again.stdout, again.stdout
            unchanged = measure(register, max(3, args.n // 3), env)
            rows.append(("model register sklearn (unchanged)", *unchanged, 2.0))
        else:
            print("(scikit-learn or skops missing: `pip install -e '.[sklearn]'` to time register)")
        serve_runs = [first_litellm_call(tmp, env, tmp / "serve.log") for _ in range(args.serve_n)]
        if serve_runs:
            log = (tmp / "serve.log").read_text(errors="replace")
            warnings = len(re.findall(r"Warning", log))
            ready = statistics.median(r for r, _ in serve_runs)
            first_call = statistics.median(f for _, f in serve_runs)
            rows.append(("serve: start to /readyz 200", ready, None, 0))
            rows.append(("serve: first litellm call after ready", first_call, None, 1.0))
    print(f"sum(range(10000)) with python3 -m timeit: {timeit_reference()}")
    print(f"median of {args.n} runs (register unchanged: {max(3, args.n // 3)}; "
          f"serve: {args.serve_n} gateways)")  # fmt: skip
    print(f"  {'':40} {'wall':>9} {'cpu':>9}  target")
    for label, wall, cpu, target in rows:
        shown_cpu = f"{cpu * 1000:7.0f}ms" if cpu is not None else f"{'-':>9}"
        verdict = "" if not target else f"< {target:g} s " + ("ok" if wall < target else "MISSED")
        print(f"  {label:40} {wall * 1000:7.0f}ms {shown_cpu}  {verdict}")
    if serve_runs:
        print(f"  warnings in the gateways' logs: {warnings}")


if __name__ == "__main__":
    main()
