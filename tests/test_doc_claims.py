"""What the docs say about the code holds: links and anchors lead somewhere, repository
paths exist, every page is in the index, metric names are exported, the dashboard panels
docs/operating.md reads exist, the import direction of docs/architecture.md holds, the
migrations stay additive as docs/operating.md promises, and its restore check works."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from tests.doc_blocks import DOCS, ROOT, pages, section, section_text

PACKAGES = ("registry", "evals", "finetune", "gateway")


@cache
def metric_names() -> frozenset[str]:
    """Every series the gateway exports, read from where its metrics are declared."""
    kinds = {
        "Counter": ("_total", "_created"),
        "Gauge": ("",),
        "Histogram": ("", "_bucket", "_sum", "_count", "_created"),
        "Summary": ("", "_sum", "_count", "_created"),
    }
    names: set[str] = set()
    for source in (ROOT / "gateway").rglob("*.py"):
        for kind, name in re.findall(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(lockgate_\w+)\"",
                                     source.read_text()):  # fmt: skip
            names.update(name.removesuffix("_total") + suffix for suffix in kinds[kind])
    return frozenset(names)


def test_every_metric_named_is_exported() -> None:
    assert "lockgate_requests_total" in metric_names()
    wrong = [
        f"{page.relative_to(ROOT)}: {name}"
        for page in pages()
        for name in sorted(set(re.findall(r"\blockgate_[a-z0-9_]+", page.read_text())))
        if name not in metric_names()
    ]
    assert not wrong, f"no such metric (gateway/metrics.py): {wrong}"


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    anchors: set[str] = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        fenced ^= line.lstrip().startswith("```")
        heading = re.match(r"#{1,6} (.+)", line)
        if heading and not fenced:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            n = 0
            while (f"{slug}-{n}" if n else slug) in anchors:
                n += 1
            anchors.add(f"{slug}-{n}" if n else slug)
    return anchors


def test_links_and_repository_paths_exist() -> None:
    """Relative links (and their #anchors) lead somewhere; a repository path in code
    (`gateway/otlp.py`, `deploy/…`, `tests/…`) exists."""
    wrong = []
    for page in [*pages(), DOCS / "cli.md"]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            name, _, anchor = target.partition("#")
            dest = page.parent / name if name else page
            if not dest.exists():
                wrong.append(f"{page.name}: link to missing {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                wrong.append(f"{page.name}: no heading for #{anchor} in {dest.name}")
        for path in re.findall(
            r"`((?:registry|evals|finetune|gateway|tests|deploy|docs)/[\w./-]*)`", text
        ):
            in_package = path.split("/")[0] in PACKAGES
            if in_package and not path.endswith((".py", "/")):
                continue  # a reader's own file (evals/qa.yaml)
            if not (ROOT / path).exists():
                wrong.append(f"{page.name}: no {path} in the repository")
    assert not wrong, "\n".join(wrong)


def test_the_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", index))
    missing = sorted(
        p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p.name not in linked
    )
    assert not missing, f"docs/README.md does not list {missing}"
    assert "(docs/README.md)" in (ROOT / "README.md").read_text()


def test_the_import_direction_architecture_md_states_holds() -> None:
    text = (DOCS / "architecture.md").read_text()
    assert "registry  <-  evals  <-  finetune  <-  gateway" in text
    wrong = []
    for rank, package in enumerate(PACKAGES):
        for source in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                for name in names:
                    parts = name.split(".")
                    if (
                        parts[0] == "lockgate"
                        and len(parts) > 1
                        and parts[1] in PACKAGES[rank + 1 :]
                    ):
                        wrong.append(f"{source.relative_to(ROOT)}: imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_dashboard_panels_operating_md_reads_exist() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/lockgate.json").read_text())
    titles = {p.get("title") for p in dashboard["panels"]}
    rows = re.findall(
        r"^\| ([^|]+?) \|", section_text(DOCS / "operating.md", "## Reading the dashboard"), re.M
    )
    named = [r for r in rows if r not in ("panel",) and not set(r) <= set("-")]
    assert len(named) >= 10, named
    assert not [n for n in named if n not in titles], f"not panels of the dashboard: {titles}"


def test_migrations_only_add_as_operating_md_says() -> None:
    """docs/operating.md: replicas of the previous release keep serving while the next
    release's migrations run, because every migration only adds tables, columns and indexes
    (an index may be replaced). A migration that drops, renames or alters must rewrite that."""
    allowed = {"create_table", "add_column", "create_index", "drop_index", "batch_alter_table",
               "f", "get_bind", "get_context"}  # fmt: skip
    for path in sorted((ROOT / "registry/migrations/versions").glob("*.py")):
        tree = ast.parse(path.read_text())
        upgrade = next(
            n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"
        )
        used = {
            n.func.attr for n in ast.walk(upgrade)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name) and n.func.value.id in ("op", "batch_op")
        }  # fmt: skip
        assert used <= allowed, (
            f"{path.name} upgrade() uses {sorted(used - allowed)}: revise docs/operating.md"
        )
    assert "only\n   adds tables, columns and indexes" in (DOCS / "operating.md").read_text()


def test_the_restore_check_finds_a_missing_artifact(tmp_path: Path, sqlite_template: Path) -> None:
    """The script of "Checking a restore" (docs/operating.md), run against a registry."""
    from lockgate.registry import Registry, RegistrySettings

    restore = section(DOCS / "operating.md", "### Checking a restore", "## Rotating keys")
    (block,) = [b for b in restore if b.lang == "python"]
    shutil.copy(sqlite_template, tmp_path / "registry.db")
    (tmp_path / "rows.jsonl").write_text('{"q": "a"}\n')
    registry = Registry(RegistrySettings(data_dir=tmp_path))
    digest = registry.datasets.add("tickets", tmp_path / "rows.jsonl")[0].digest
    registry.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env["LOCKGATE_DATA_DIR"] = str(tmp_path)

    def check() -> str:
        done = subprocess.run([sys.executable, "-c", block.text], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert check().startswith("1 artifacts, 0 missing")
    blob = tmp_path / "artifacts/blobs/sha256" / digest[7:9] / digest[7:]
    blob.unlink()
    assert check().splitlines() == ["1 artifacts, 1 missing", f"missing {digest}"]
