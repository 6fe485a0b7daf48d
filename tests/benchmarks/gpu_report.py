"""The short Markdown table of a ``gpu_check.py`` report (its JSON is the full record)."""

from __future__ import annotations

from typing import Any

SPEEDUP_TARGET = 1.5  # lockgate's tokens/s against the Trainer + PEFT recipe, on a GPU


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _throughput_rows(title: str, entry: dict[str, Any], device: str) -> list[str]:
    if not entry.get("ok"):
        return [f"| {title} | failed: {entry.get('error')} |"]
    rows = []
    for r in entry["results"].values():
        rows.append(f"| {title}: {r['recipe']} | {_n(r['tokens_per_s'])} tokens/s, "
                    f"{_n(r['peak_mem_mib'])} {r['mem_unit']} |")  # fmt: skip
    if "speedup" in entry:
        met = entry["speedup"] >= SPEEDUP_TARGET and entry["memory_ratio"] <= 1.0
        verdict = ("met" if met else "not met") if device == "cuda" else "a GPU target"
        rows.append(f"| {title}: lockgate / recipe | {entry['speedup']:.2f}x tokens/s at "
                    f"{entry['memory_ratio']:.2f}x memory (target >= {SPEEDUP_TARGET}x at "
                    f"<= 1.00x: {verdict}) |")  # fmt: skip
    return rows


def _job(title: str, entry: dict[str, Any]) -> list[str]:
    if not entry.get("ok"):
        return [f"| {title} | failed: {entry.get('error')} |"]
    j = entry["job"]
    text = (
        f"{j['status']}, {j['model']}, {j['steps']} steps in {_n(j['seconds'], 1)} s, "
        f"loss {_n(j['loss'], 4)}, median step {_n(j['step_tokens_per_s'])} tokens/s"
    )
    if "peak_mem_mib" in j:
        text += f", {_n(j['peak_mem_mib'])} MiB peak {j['mem_unit']}"
    rows = [f"| {title} | {text} |"]
    if "resume" in entry:
        r = entry["resume"]
        rows.append(f"| {title}: kill + resume | {'holds' if r['holds'] else 'FAILS'}: "
                    f"{r['status']}, attempt {r['attempts']}, resumed from step "
                    f"{r['resumed_from']}, loss {_n(r['loss'], 4)} (relative difference "
                    f"{_n(r['loss_rel_diff'], 6)}, tolerance {r['tolerance']}) |")  # fmt: skip
    compared = entry.get("compared_with_local")
    if compared:
        rows.append(f"| {title}: against the local executor | loss relative difference "
                    f"{_n(compared['loss_rel_diff'], 6)}, largest adapter weight difference "
                    f"{_n(compared['max_abs_weight_diff'], 6)}, weights file identical: "
                    f"{_n(compared['identical_weights_file'])} |")  # fmt: skip
    return rows


def _serving(entry: dict[str, Any]) -> list[str]:
    if not entry.get("ok"):
        return [f"| serving | failed: {entry.get('error')} |"]
    rows = [f"| serving: load | {entry['adapter']} on {entry['device']}: base + adapter loaded "
            f"in {_n(entry['load_s'], 1)} s; {entry['max_tokens']}-token answers "
            f"(all {entry['generated_tokens']} tokens counted: "
            f"{_n(entry['tokens_as_expected'])}) |"]  # fmt: skip
    for key, title in (("adapter_c1", "adapter, 1 at a time"), ("adapter_c4", "adapter, 4 at once"),
                       ("base_c1", "base, 1 at a time")):  # fmt: skip
        s = entry[key]
        rows.append(
            f"| serving: {title} | time to first token {_n(s['ttft_ms_median'])} ms "
            f"(max {_n(s['ttft_ms_max'])}), {_n(s['tokens_per_s_per_request'])} tokens/s "
            f"per request, {_n(s['aggregate_tokens_per_s'])} tokens/s in all |"
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    env = report.get("environment", {})
    m = report["measurements"]
    lines = [f"GPU check: device {report['device']}, shape {report['shape']}, "
             f"{env.get('gpu') or 'no GPU'}; torch {env.get('torch')}, transformers "
             f"{env.get('transformers')}, peft {env.get('peft')}; "
             f"{_n(report['elapsed_s'], 0)} s in all", "",
             "| measurement | figures |", "|---|---|"]  # fmt: skip
    if "throughput" in m:
        lines += _throughput_rows("1 throughput", m["throughput"], report["device"])
    if "tradeoffs" in m:
        for title, entry in m["tradeoffs"]["variants"].items():
            lines += _throughput_rows(f"2 {title}", entry, report["device"])
    if "worker_local" in m:
        lines += _job("3 worker, local", m["worker_local"])
    if "worker_torchrun" in m:
        lines += _job("4 worker, torchrun", m["worker_torchrun"])
    if "serving" in m:
        lines += [r.replace("| serving", "| 5 serving", 1) for r in _serving(m["serving"])]
    if report.get("failed"):
        lines += ["", f"Failed: {', '.join(report['failed'])} (see gpu_check.log)."]
    return "\n".join(lines) + "\n"
