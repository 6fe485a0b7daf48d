"""The GPU check: fine-tuning throughput, whole jobs through the worker, and local serving.

One command runs every measurement, each in its own process (its peak memory is its own),
and writes ``gpu_check.json``, ``gpu_check.md`` (a short table) and ``gpu_check.log``:

1. ``throughput``: lockgate's packed LoRA against the plain Trainer + PEFT recipe
   (``finetune_throughput.py``); target at least 1.5x the recipe's tokens/s at no more memory.
2. ``tradeoffs``: the same with gradient checkpointing, and at a longer ``max_seq_length``.
3. ``worker_local``: a whole job through the real worker (local executor) that registers its
   adapter; then the exact-resume check: SIGKILL after a checkpoint, resume, same loss.
4. ``worker_torchrun``: the job through the ``torchrun`` executor with one process.
5. ``serving``: the gateway's local provider serving base + adapter: time to first token and
   tokens/s, one and four concurrent streams.

``--shape qwen2-0.5b`` is Qwen2-0.5B's shape with random weights and a tokenizer built here
(nothing is downloaded). ``--device cpu --shape tiny`` runs the same code paths in about a
minute; ``tests/finetune/test_gpu_check.py`` runs it in the default test run.

On a GPU machine that reaches no package registry, lockgate and its runtime dependencies
travel as wheels (the machine already has torch, transformers, peft, accelerate):

    .venv/bin/python tests/benchmarks/gpu_check.py --prepare-wheels .whl      # here, online
    python3 tests/benchmarks/gpu_check.py --wheels .whl --device cuda --shape qwen2-0.5b --out $OUT

``--wheels`` installs them with ``pip install --no-index --find-links`` under a constraints file
that pins the machine's own torch, transformers, peft, accelerate, numpy and pandas.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from gpu_report import markdown  # noqa: E402

# what each shape runs: arguments of finetune_throughput.py, the trade-off variants, serving
PLANS: dict[str, dict[str, Any]] = {
    "tiny": {
        "throughput": ["--steps", "3", "--warmup", "1", "--batch-size", "4", "--grad-accum", "1",
                       "--max-len", "128", "--examples", "64"],
        "tradeoffs": {"gradient checkpointing, max_len 256": [  # lockgate's path alone: CI time
            "--gradient-checkpointing", "--max-len", "256", "--median-len", "160",
            "--recipes", "lockgate"]},
        "serving": ["--max-tokens", "32", "--repeat", "2"],
        "budget_s": 600,
    },
    "qwen2-0.5b": {
        "throughput": [],  # finetune_throughput.py's defaults: 20 steps, 8 x 2, max_len 512
        "tradeoffs": {
            "gradient checkpointing": ["--gradient-checkpointing"],
            "max_len 2048": ["--max-len", "2048", "--median-len", "600"],
            "max_len 2048, gradient checkpointing": [
                "--max-len", "2048", "--median-len", "600", "--gradient-checkpointing"],
        },
        "serving": ["--max-tokens", "128", "--repeat", "3"],
        "budget_s": 450,
    },
}  # fmt: skip
CAPS = {"throughput": 150, "setup": 90, "worker_local": 150, "worker_torchrun": 100,
        "serving": 100}  # fmt: skip
MEASUREMENTS = ["throughput", "tradeoffs", "worker_local", "worker_torchrun", "serving"]
KEEP = ["torch", "torchvision", "torchaudio", "triton", "transformers", "peft", "accelerate",
        "numpy", "pandas", "tokenizers", "safetensors", "huggingface-hub"]  # fmt: skip
NOT_CARRIED = {"litellm"}  # heavy, and neither the worker nor the local provider imports it
PLATFORMS = ["manylinux2014_x86_64", "linux_x86_64"] + [
    f"manylinux_2_{n}_x86_64" for n in range(17, 40)
]


class Runner:
    """Runs child processes within one time budget; each one's output goes to the log."""

    def __init__(self, args: argparse.Namespace, log: Path) -> None:
        self.args, self.log = args, log
        self.deadline = time.monotonic() + args.budget_s
        self.lock = threading.Lock()  # chains may run side by side (CPU mode)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
                    "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
                        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
        if args.device == "cpu":
            self.env["OMP_NUM_THREADS"] = str(args.threads)

    def run(self, name: str, cmd: list[str], out: Path, cap: float) -> dict[str, Any]:
        left = self.deadline - time.monotonic()
        if left < 10:
            return {"ok": False, "error": f"skipped: the {self.args.budget_s} s budget is spent"}
        timeout = min(cap, left)
        started = time.perf_counter()
        own_log = out.with_suffix(".log")
        with own_log.open("w", encoding="utf-8") as log:
            # a session of its own: a timeout ends the grandchildren too (recipes, torchrun)
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            try:
                code: int | str = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = f"timed out after {timeout:.0f} s"
        seconds = time.perf_counter() - started
        text = own_log.read_text(encoding="utf-8", errors="replace")
        with self.lock, self.log.open("a", encoding="utf-8") as log:
            log.write(f"\n=== {name} ({seconds:.1f} s, exit {code}): {' '.join(cmd)}\n{text}")
            print(f"{name}: {'ok' if code == 0 else code} in {seconds:.1f} s", flush=True)
        if code != 0 or not out.is_file():
            return {"ok": False, "error": f"exit {code}", "log_tail": text[-2500:],
                    "seconds": seconds}  # fmt: skip
        return {"ok": True, "seconds": seconds, **json.loads(out.read_text(encoding="utf-8"))}


def _throughput_cmd(args: argparse.Namespace, extra: list[str], out: Path) -> list[str]:
    return [sys.executable, str(HERE / "finetune_throughput.py"), "--device", args.device,
            "--shape", args.shape, "--threads", str(args.threads), "--tmp",
            str(args.work / "trainer-tmp"), *extra, "--json", str(out)]  # fmt: skip


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput and its trade-offs need nothing else; the jobs and serving build on the
    setup. On CUDA everything runs one after another (timings and GPU memory are each its
    own); on CPU (``--side-by-side``) the two chains run at once, for CI's wall time."""
    plan = PLANS[args.shape]
    runner = Runner(args, args.out / "gpu_check.log")
    m: dict[str, Any] = {}
    jobs = [sys.executable, str(HERE / "gpu_jobs.py")]
    common = ["--device", args.device, "--shape", args.shape, "--work", str(args.work)]
    res = args.work / "results"
    res.mkdir(parents=True, exist_ok=True)

    def wanted(name: str) -> bool:
        return not args.only or name in args.only

    def throughput() -> None:
        if wanted("throughput"):
            cmd = _throughput_cmd(args, plan["throughput"], res / "throughput.json")
            m["throughput"] = runner.run("throughput", cmd, res / "throughput.json",
                                         CAPS["throughput"])  # fmt: skip

    def tradeoffs() -> None:
        if not wanted("tradeoffs"):
            return
        variants: dict[str, Any] = {}
        for i, (title, extra) in enumerate(plan["tradeoffs"].items()):
            out = res / f"tradeoff-{i}.json"
            cmd = _throughput_cmd(args, [*plan["throughput"], *extra], out)  # later flags win
            variants[title] = runner.run(f"tradeoffs: {title}", cmd, out, args.budget_s)
        m["tradeoffs"] = {"ok": all(v["ok"] for v in variants.values()), "variants": variants}

    def jobs_and_serving() -> None:
        if not {"worker_local", "worker_torchrun", "serving"} & set(args.only or MEASUREMENTS):
            return
        setup = runner.run("setup", [*jobs, "setup", *common, "--out", str(res / "setup.json")],
                           res / "setup.json", CAPS["setup"])  # fmt: skip
        m["setup"] = setup
        for name, command in (("worker_local", "local"), ("worker_torchrun", "torchrun")):
            if wanted(name):
                out = res / f"{name}.json"
                cmd = [*jobs, command, *common, "--out", str(out)]
                m[name] = runner.run(name, cmd, out, CAPS[name]) if setup["ok"] else _skipped()
        if wanted("serving"):
            adapter = _adapter(m)
            cmd = [sys.executable, str(HERE / "gpu_serving.py"), "--work", str(args.work),
                   "--out", str(res / "serving.json"), "--adapter", str(adapter),
                   "--threads", str(args.threads), *plan["serving"]]  # fmt: skip
            ready = setup["ok"] and adapter is not None
            m["serving"] = (runner.run("serving", cmd, res / "serving.json", CAPS["serving"])
                            if ready else _skipped("setup or an adapter"))  # fmt: skip

    if args.side_by_side:
        side = threading.Thread(target=lambda: (throughput(), tradeoffs()))
        side.start()
        jobs_and_serving()
        side.join()
    else:  # the trade-offs last: when the budget runs short, they are what is cut
        throughput()
        jobs_and_serving()
        tradeoffs()
    return {name: m[name] for name in ["setup", *MEASUREMENTS] if name in m}


def _skipped(what: str = "setup") -> dict[str, Any]:
    return {"ok": False, "error": f"skipped: {what} failed"}


def _adapter(m: dict[str, Any]) -> str | None:
    for name in ("worker_local", "worker_torchrun"):
        entry = m.get(name) or {}
        if entry.get("ok") and entry.get("registered"):
            return str(entry["job"]["model"])
    return None


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata as md
    import platform

    env: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable}
    for name in ("torch", "transformers", "peft", "accelerate", "lockgate"):
        try:
            env[name] = md.version(name)
        except md.PackageNotFoundError:
            env[name] = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                 "--format=csv,noheader"]  # fmt: skip
        done = subprocess.run(query, capture_output=True, text=True, check=False)
        env["gpu"] = done.stdout.strip() or done.stderr.strip()
    return env


def runtime_requirements() -> list[str]:
    """lockgate's runtime dependencies the device needs, and the openai SDK for serving."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = [d for d in project["dependencies"] if _name(d) not in NOT_CARRIED]
    openai = [d for d in project["optional-dependencies"]["dev"] if _name(d) == "openai"]
    return deps + openai


def _name(requirement: str) -> str:
    for sep in "[<>=!~; ":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower().replace("_", "-")


def prepare_wheels(folder: Path, python_version: str) -> None:
    """Here, online: lockgate's wheel and its runtime dependencies' wheels for the device."""
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    for old in folder.glob("lockgate-*.whl"):
        old.unlink()
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(folder), str(ROOT)]
    subprocess.run(build, check=True)
    requirements = folder / "requirements.txt"
    requirements.write_text("\n".join(runtime_requirements()) + "\n", encoding="utf-8")
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    download = [
        *pip,
        "download",
        "-q",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        *platforms,
        "-d",
        str(folder),
        "-r",
        str(requirements),
    ]
    subprocess.run(download, check=True)
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    count = len(list(folder.glob("*.whl")))
    print(f"{count} wheels, {size:.1f} MiB in {folder}; carry it: run(carry=['{folder}'])")


def install_wheels(folder: Path, log: Path) -> dict[str, Any]:
    """On the device: install from ``folder`` alone, never replacing the machine's torch
    stack (a constraints file pins each of KEEP that is installed to its version)."""
    import importlib.metadata as md

    pins = []
    for name in KEEP:
        try:
            pins.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            continue
    constraints = Path(tempfile.mkdtemp()) / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(folder),
           "--no-cache-dir", "--no-compile", "--disable-pip-version-check"]  # fmt: skip
    wheel = sorted(folder.glob("lockgate-*.whl"))[-1]
    started = time.perf_counter()
    with log.open("a", encoding="utf-8") as out:
        for cmd in (
            [*pip, "--no-deps", "--force-reinstall", str(wheel)],
            [*pip, "-r", str(folder / "requirements.txt"), "-c", str(constraints)],
        ):
            out.write(f"\n=== install: {' '.join(cmd)}\n")
            out.flush()
            subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return {"pinned": pins, "seconds": time.perf_counter() - started}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--shape", choices=sorted(PLANS), default="tiny")
    p.add_argument("--out", type=Path, default=Path("gpu-check-out"), help="JSON, table, log")
    p.add_argument("--work", type=Path, help="models, registry, jobs (default: a temp folder)")
    p.add_argument("--only", type=lambda s: s.split(","), help=f"some of {','.join(MEASUREMENTS)}")
    p.add_argument("--budget-s", type=int, help="stop starting measurements after this long")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process on CPU")
    p.add_argument(
        "--side-by-side",
        action=argparse.BooleanOptionalAction,
        help="run the throughput and the job chains at once (default: on CPU)",
    )
    p.add_argument("--wheels", type=Path, help="first install lockgate and its needs from here")
    p.add_argument("--prepare-wheels", type=Path, metavar="DIR", help="fill DIR and exit")
    p.add_argument("--python-version", default="3.12", help="of the device, for --prepare-wheels")
    args = p.parse_args()
    if args.prepare_wheels:
        prepare_wheels(args.prepare_wheels, args.python_version)
        return 0
    args.budget_s = args.budget_s or PLANS[args.shape]["budget_s"]
    if args.side_by_side is None:
        args.side_by_side = args.device == "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.log").write_text("", encoding="utf-8")
    temp = None
    if args.work is None:
        temp = tempfile.mkdtemp(prefix="lockgate-gpu-check-")
        args.work = Path(temp)
    shutil.rmtree(args.work / "registry", ignore_errors=True)  # every run starts afresh
    started = time.perf_counter()
    report: dict[str, Any] = {"device": args.device, "shape": args.shape}
    if args.wheels:
        report["install"] = install_wheels(args.wheels, args.out / "gpu_check.log")
    report["environment"] = environment(args)
    report["measurements"] = run_all(args)
    report["elapsed_s"] = time.perf_counter() - started
    report["failed"] = [k for k, v in report["measurements"].items() if not v.get("ok")]
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = markdown(report)
    (args.out / "gpu_check.md").write_text(table, encoding="utf-8")
    print(table)
    if temp is not None:
        shutil.rmtree(temp, ignore_errors=True)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
