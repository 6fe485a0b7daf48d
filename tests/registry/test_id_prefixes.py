"""Run and job ids by unique prefix, as git takes commit ids: through the real CLI, on SQLite
and PostgreSQL. One prefix, one match; several is exit 2 naming them; `%` and `_` are
characters, not wildcards; the HTTP API keeps full ids."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session

from lockgate.registry import NotFound, Registry
from lockgate.registry.tables import Run, utcnow
from tests.conftest import Cli


def _add_runs(registry: Registry, *ids: str) -> None:
    """Runs with chosen ids (create_run draws random ones), so prefixes can collide."""
    with Session(registry.db.engine) as session, session.begin():
        for run_id in ids:
            row = Run(id=run_id, kind="eval", name=run_id, status="succeeded", params={},
                      metrics={"acc": 0.5}, tags={}, author="t", created_at=utcnow())  # fmt: skip
            session.add(row)


def test_run_show_takes_a_unique_prefix(cli: Cli, registry: Registry) -> None:
    run = registry.runs.create("eval", name="nightly", params={"n": 3})
    code, out, err = cli("run", "show", run.id[:8], "--json")
    assert (code, err) == (0, "") and json.loads(out)["id"] == run.id
    code, out, _ = cli("run", "show", run.id[:4])
    assert code == 0 and run.id in out and "nightly" in out
    assert cli("run", "show", run.id, "--json")[0] == 0


def test_run_prefix_errors(cli: Cli, registry: Registry) -> None:
    _add_runs(registry, "abcd1111", "abcd2222", "abce3333", "ab_d4444", "ab%d5555")
    code, _, err = cli("run", "show", "abcd")
    assert code == 2 and "ambiguous" in err and "abcd1111" in err and "abcd2222" in err
    assert "abce3333" not in err
    assert cli("run", "show", "abcd1", "--json")[0] == 0
    code, _, err = cli("run", "show", "a")
    assert code == 2 and "too short" in err and "at least 4" in err
    code, _, err = cli("run", "show", "ffff")
    assert code == 2 and "no run with id 'ffff'" in err
    # SQL wildcards are characters: `ab_d` is one run (not abcd…), `ab%d` another, `____` none
    code, out, err = cli("run", "show", "ab_d", "--json")
    assert (code, json.loads(out)["id"]) == (0, "ab_d4444"), err
    code, out, err = cli("run", "show", "ab%d", "--json")
    assert (code, json.loads(out)["id"]) == (0, "ab%d5555"), err
    assert "no run with id '____'" in cli("run", "show", "____")[2]
    assert "no run with id '%%%%'" in cli("run", "show", "%%%%")[2]


def test_finetune_commands_take_a_unique_prefix(cli: Cli, registry: Registry) -> None:
    job, _ = registry.jobs.create("finetune", {"output_model": "tuned"})
    other, _ = registry.jobs.create("finetune", {"output_model": "other"}, job_id="ftjob-zz_1")
    registry.jobs.create("finetune", {"output_model": "third"}, job_id="ftjob-zzx1")
    short = job.id[:10]
    code, out, err = cli("finetune", "status", short, "--json")
    assert (code, json.loads(out)["id"]) == (0, job.id), err
    code, out, _ = cli("finetune", "logs", short)
    assert code == 0 and "job created (queued)" in out
    code, out, err = cli("finetune", "cancel", short, "--json")
    assert (code, json.loads(out)["status"]) == (0, "cancelled"), err

    code, _, err = cli("finetune", "status", "ftjob-")
    assert code == 2 and "ambiguous" in err and job.id in err and other.id in err
    code, out, err = cli("finetune", "status", "ftjob-zz_", "--json")
    assert (code, json.loads(out)["id"]) == (0, other.id), err
    code, _, err = cli("finetune", "cancel", "ftj")
    assert code == 2 and "too short" in err
    code, _, err = cli("finetune", "logs", "ftjob-nope")
    assert code == 2 and "no job with id 'ftjob-nope'" in err


def test_the_api_methods_keep_full_ids(registry: Registry) -> None:
    """get_job (and with it GET /v1/fine_tuning/jobs/{id}) and get_run take full ids only."""
    job, _ = registry.jobs.create("finetune", {})
    run = registry.runs.create("eval")
    with pytest.raises(NotFound):
        registry.jobs.get(job.id[:10])
    with pytest.raises(NotFound):
        registry.runs.get(run.id[:8])
    assert registry.jobs.resolve_id(job.id[:10]) == job.id
    assert registry.runs.resolve_id(run.id[:8]) == run.id
