"""``lockgate drift check`` through the real CLI root (SQLite and PostgreSQL): files and
registry datasets, exit codes 0/1/2, JSON, the HTML report, and hostile names and values."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lockgate.evals.drift import build_profile, check_drift
from lockgate.evals.drift.html import render_html
from lockgate.registry import Registry
from tests.conftest import Cli


def _write(path: Path, n: int, seed: int, shift: float, names: tuple[str, str, str]) -> Path:
    rng = np.random.default_rng(seed)
    num, cat, other = names
    rows = [
        {num: float(x), cat: str(c), other: float(y)}
        for x, c, y in zip(
            rng.normal(10 + 5 * shift, 2, n),
            rng.choice(["a", "b", "c"], n, p=[0.5 - shift / 3, 0.3, 0.2 + shift / 3]),
            rng.normal(0, 1, n),
            strict=True,
        )
    ]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(names))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


PLAIN = ("amount", "plan", "noise")


def test_files_exit_1_on_drift_and_0_without(cli: Cli, tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref.jsonl", 500, 1, 0.0, PLAIN)
    cur = _write(tmp_path / "cur.csv", 400, 2, 1.0, PLAIN)
    same = _write(tmp_path / "same.parquet", 400, 3, 0.0, PLAIN)
    code, out, err = cli("drift", "check", "--reference", str(ref), "--current", str(cur))
    assert code == 1, err
    assert re.search(r"amount\s.*ks.*drift", out)
    assert "dataset: drift (2 of 3 columns drifted" in out
    code, out, err = cli("drift", "check", "-r", str(ref), "--current", str(same), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["drifted"] is False and data["n_columns"] == 3
    assert data["reference"] == str(ref) and data["reference_digest"].startswith("sha256:")
    assert [c["column"] for c in data["columns"]] == list(PLAIN)
    code, out, _ = cli("drift", "check", "-r", str(ref), "--current", str(cur),
                       "--columns", "noise", "--json")  # fmt: skip
    assert code == 0 and [c["column"] for c in json.loads(out)["columns"]] == ["noise"]
    # the same file again: its stored profile serves, the verdicts do not change
    assert json.loads(out)["reference_cached"] is True


def test_registry_datasets_html_and_run(cli: Cli, registry: Registry, tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref.csv", 300, 4, 0.0, PLAIN)
    cur = _write(tmp_path / "cur.csv", 300, 5, 1.0, PLAIN)
    registry.datasets.add("orders", ref)
    registry.datasets.add("orders", cur)
    page = tmp_path / "out" / "report.html"
    code, out, err = cli("drift", "check", "--reference", "dataset:orders@1",
                         "--current", "orders@2", "--html", str(page), "--json")  # fmt: skip
    assert code == 1, err
    data = json.loads(out)
    html = page.read_text()
    assert html.count("<svg") == 3 and "<script" not in html
    info = registry.runs.get(data["run_id"])
    assert registry.artifacts.read_bytes(info.artifacts["report.html"]).decode() == html
    assert info.params["reference_digest"] == registry.datasets.get("orders@1").digest
    code, _, err = cli("drift", "check", "-r", "orders@1", "--current", "orders@2",
                       "--html", str(ref / "x.html"))  # fmt: skip
    assert code == 2 and "cannot write the HTML report" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r", "missing.jsonl", "--current", "orders@1"], "no such file"),
        (["-r", "dataset:nope@3", "--current", "nope@3"], "'dataset:nope@3'"),
        (["-r", "bad name!", "--current", "x"], "'bad name!'"),
        (["-r", "REF", "--current", "REF", "--columns", "nothere"], "nothere"),
        (["-r", "REF", "--current", "REF", "--columns", " , "], "--columns names no column"),
        (["-r", "REF", "--current", "notes.txt"], "notes.txt"),
        (["-r", "REF", "--current", "broken.jsonl"], "broken.jsonl"),
        (["-r", "REF", "--current", "REF", "--subject", "model:ghost@1"], "ghost"),
    ],
)
def test_bad_input_exits_2_naming_it(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    ref = _write(tmp_path / "ref.jsonl", 50, 6, 0.0, PLAIN)
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "broken.jsonl").write_text('{"amount": 1}\n{not json\n')
    code, out, err = cli("drift", "check", *[str(ref) if a == "REF" else a for a in args])
    assert code == 2, (out, err)
    assert message in err


HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "[red]x[/red]&amp;")


def test_hostile_column_names_and_values_stay_text(cli: Cli, tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref.jsonl", 300, 7, 0.0, HOSTILE)
    cur_rows = [json.loads(line) for line in ref.read_text().splitlines()]
    for i, row in enumerate(cur_rows):  # a hostile category in the current data
        row[HOSTILE[1]] = "<b onmouseover=alert(3)>" if i % 2 else "a"
    cur = tmp_path / "cur.jsonl"
    cur.write_text("".join(json.dumps(r) + "\n" for r in cur_rows))
    page = tmp_path / "report.html"
    code, out, err = cli("drift", "check", "-r", str(ref), "--current", str(cur),
                         "--html", str(page))  # fmt: skip
    assert code in (0, 1), err
    html = page.read_text()
    for tag in ("<script", "<img", "<b "):
        assert tag not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b onmouseover=alert(3)&gt;" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "[red]x[/red]&amp;" in out  # rich markup in a name is printed, not applied
    code, out, _ = cli("drift", "check", "-r", str(ref), "--current", str(cur), "--json")
    assert {c["column"] for c in json.loads(out)["columns"]} == set(HOSTILE)


def test_html_report_draws_both_distributions() -> None:
    rng = np.random.default_rng(8)
    ref = {"x": rng.normal(0, 1, 2000), "c": rng.choice(["u", "v"], 2000)}
    cur = {"x": rng.normal(2, 1, 2000), "c": rng.choice([f"k{i}" for i in range(40)], 2000)}
    ref_profile = build_profile(ref)
    cur_profile = build_profile(cur, kinds={"x": "numeric", "c": "categorical"}, exact_limit=None)
    report = check_drift(ref_profile, cur_profile)
    page = render_html(report, ref_profile, cur_profile, reference_name="r", current_name="c")
    assert page.count("<svg") == 2
    assert page.count("<rect") >= 2 * 30  # both sides of every numeric bin, then categories
    assert "other (22 categories)" in page  # 42 categories: the 20 largest, then the rest
    assert "wasserstein" in page and "jensenshannon" in page


def test_drift_is_a_cli_group(cli: Cli) -> None:
    code, out, _ = cli("--help")
    assert code == 0 and "drift" in out
    code, out, _ = cli("drift", "--help")
    assert code == 0 and "check" in out and "traffic" in out
