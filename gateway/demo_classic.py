"""The demo's closing steps: watching what is served, and acting on what changes.

* :func:`traffic_drift_step` — the drift stage of the LLM loop: shifted traffic through the
  gateway, ``lockgate drift traffic`` reports it, and a monitor policy on the prompt re-runs
  its eval suite.
* :func:`classic_step` — a scikit-learn churn model end to end: trained by a script, registered
  with a reference dataset, gated by an eval suite, labelled, served through ``:predict``; the
  inputs shift, ``lockgate drift check`` sees it, a monitor policy fires and queues a retraining
  job (the same script), the new version passes the gate and the label moves.

Like :mod:`lockgate.gateway.demo`, every step prints the command a user would type and runs
the real thing, offline, on the demo's own registry.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lockgate.gateway.demo import Demo

# --- the drift stage of the LLM loop --------------------------------------------------------

# another topic, asked at length: the stand-in model knows none of it, so the prompts are
# longer and the answers are its (longer) fallback
OFF_TOPIC = [
    "I run a small bakery with three shops and we are thinking about moving our whole point of "
    "sale system over to your platform next quarter; what does a migration like that involve, "
    "and how long would our tills be offline while it happens?",
    "Our accountant asked whether your company can sign a data processing agreement for the "
    "European Union, which region the customer records are stored in, and whether backups ever "
    "leave that region; could you explain all three in some detail?",
    "We would like to connect the warehouse scanners in our two depots to your service through "
    "an API; which endpoints exist for stock levels, how are they authenticated, and are there "
    "rate limits we should plan around during the Christmas peak?",
]
GAP_S = 3.0  # at least this long between the reference traffic and the shifted traffic
MARGIN_S = 1.5  # a window reaches this far before the shifted traffic (< GAP_S), so a command
# that starts late (a loaded machine) still finds the shifted calls in it


def _prompt_calls(client: Any, questions: list[str]) -> int:
    """POST each question through the gateway as support@production; the count of 200s."""
    ok = 0
    for question in questions:
        prompt = {"name": "support", "label": "production",
                  "variables": {"product": "Acme Cloud", "question": question}}  # fmt: skip
        response = client.post("/chat/completions", json={"model": "support-bot", "prompt": prompt})
        ok += response.status_code == 200
    return ok


def _window(since: float) -> str:
    """A window, ending now, that reaches back MARGIN_S to 1 s further past ``since`` (a
    time.time()), and so not as far as the traffic sent GAP_S before ``since``."""
    return f"{math.ceil(time.time() - since + MARGIN_S)}s"


def traffic_drift_step(demo: Demo) -> None:
    import httpx
    import yaml

    from lockgate.gateway.app import create_app
    from lockgate.gateway.background import ServerThread
    from lockgate.gateway.demo import DemoFailed, _lockgate
    from lockgate.gateway.demo_model import dataset_rows

    demo.say("5. Drift in LLM traffic: longer prompts on another topic are noticed")
    usual = [row["question"] for row in dataset_rows()][::2]
    shifted = [f"{q} Also: {OFF_TOPIC[i % 3]}" for i, q in enumerate(usual)]
    # `drift traffic` and the policy compare a window ending now with the one before it.
    # The demo has no hours to wait, so it sends the usual traffic first, then (GAP_S later)
    # the shifted traffic, and makes the current window just long enough to hold the shifted
    # calls alone: the usual ones (and the eval runs' calls above) fall in the reference.
    with (
        ServerThread(create_app(demo.settings)) as gateway,
        httpx.Client(base_url=gateway.url + "/v1", timeout=30) as client,
    ):
        ok = _prompt_calls(client, usual)
        demo.out.print(f"{ok} calls to support@production with the usual FAQ questions")
        time.sleep(GAP_S)
        started = time.time()
        ok = _prompt_calls(client, shifted)
        demo.out.print(
            f"then {ok} calls asking, at length, about migrations, data protection and APIs"
        )
    # the gateway has stopped: every call record is written
    window = _window(started)
    # the columns a shift of the inputs moves, and the error rate: the unchanged finish
    # reasons would make the dataset verdict hang on whether latency drifts too
    _lockgate(demo, "drift", "traffic", "--model", "support-bot", "--current", window,
              "--reference", "10m", "--columns", "input_tokens,output_tokens,latency_ms,error",
              expect=1)  # fmt: skip
    suite = demo.root / "support-faq.yaml"
    spec = yaml.safe_load(suite.read_text())
    spec["target"]["model"] = "prompt:support@production"  # the target is not in its pin
    suite.write_text(yaml.safe_dump(spec, sort_keys=False))
    policy = demo.root / "support-traffic.yaml"
    policy.write_text(yaml.safe_dump({
        "name": "support-traffic",
        "target": "prompt:support@production",
        "signal": {"kind": "drift", "column": "input_tokens", "reference_window": "10m"},
        "window": _window(started),
        "min_samples": 20,
        "persistence": 1,
        "actions": [{"kind": "alert"}, {"kind": "eval", "suite": str(suite)}],
    }, sort_keys=False))  # fmt: skip
    demo.out.print(policy.read_text().rstrip(), markup=False, highlight=False)
    _lockgate(demo, "monitor", "run", str(policy), expect=1)
    [decision] = demo.registry.runs.list("monitor", limit=1, name="support-traffic")
    if decision.tags.get("decision") != "fired":
        raise DemoFailed(f"the support-traffic policy did not fire: {decision.tags}")


# --- a classic model -----------------------------------------------------------------------

NUMERIC = ["tenure_months", "monthly_spend", "support_calls"]
FEATURES = [*NUMERIC, "plan"]
PLANS = ["basic", "pro", "enterprise"]

TRAIN_PY = '''\
"""Train the churn model. Run it by hand, or as a retraining job: `lockgate finetune retrain`
and a monitor policy's retrain action run this same script (docs/retraining.md)."""
import json
import os

import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["tenure_months", "monthly_spend", "support_calls"]
frame = pd.read_csv(os.environ["LOCKGATE_DATASET"])
features, target = frame[NUMERIC + ["plan"]], frame["churned"]
columns = ColumnTransformer([("numeric", StandardScaler(), NUMERIC),
                             ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])])
model = make_pipeline(columns, LogisticRegression(max_iter=1000)).fit(features, target)
sio.dump(model, os.environ["LOCKGATE_OUTPUT"])
print(f"trained on {len(frame)} rows; train accuracy {model.score(features, target):.3f}")
if os.environ.get("LOCKGATE_META"):  # a retraining job: the data it trained on becomes the
    with open(os.environ["LOCKGATE_META"], "w") as f:  # new version's drift reference
        json.dump({"metrics": {"train_accuracy": model.score(features, target)},
                   "reference": os.environ["LOCKGATE_DATASET_REF"]}, f)
'''


def churn_frame(n: int, seed: int, *, shifted: bool = False) -> Any:
    """Customers of a subscription service, seeded: three numbers, a plan and whether they
    churned. ``shifted``: the customers a cheap promotion brings in — newer, spending more,
    calling support more often, mostly on the basic plan."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped]

    rng = np.random.default_rng(seed)
    if shifted:
        tenure, spend = rng.gamma(1.5, 5.0, n), rng.normal(85, 18, n)
        calls, plan = rng.poisson(3.0, n), rng.choice(PLANS, n, p=[0.7, 0.2, 0.1])
    else:
        tenure, spend = rng.gamma(2.0, 14.0, n), rng.normal(60, 18, n)
        calls, plan = rng.poisson(1.2, n), rng.choice(PLANS, n, p=[0.4, 0.4, 0.2])
    tenure, spend = np.ceil(tenure).astype(int), np.clip(spend, 5, None).round(2)
    effect = np.select([plan == "basic", plan == "pro"], [0.6, 0.0], -0.8)
    logit = 0.5 - 0.12 * tenure + 0.05 * (spend - 60) + 0.9 * (calls - 1) + effect
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"tenure_months": tenure, "monthly_spend": spend,
                         "support_calls": calls, "plan": plan, "churned": churned})  # fmt: skip


def _records(frame: Any) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(r, default=lambda v: v.item())) for r in
            frame[FEATURES].to_dict(orient="records")]  # fmt: skip


def _train_by_hand(demo: Demo, script: Path, data: Path, output: Path) -> None:
    """Run train.py as a user would by hand. In this process, to spare the demo a second
    interpreter start (scikit-learn and skops take seconds to import); the retraining job
    below runs the same script as a process of its own."""
    import contextlib
    import io
    import os
    import runpy

    shown = f"LOCKGATE_DATASET={data.name} LOCKGATE_OUTPUT={output.name} python {script.name}"
    demo.out.print(f"[dim]$ {shown}[/dim]", markup=True, highlight=False)
    given = {"LOCKGATE_DATASET": str(data), "LOCKGATE_OUTPUT": str(output)}
    os.environ.update(given)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        for key in given:
            os.environ.pop(key, None)
    demo.out.print(printed.getvalue().rstrip(), markup=False, highlight=False)


def _predict(demo: Demo, client: Any, batches: list[Any], shown: str) -> None:
    from lockgate.gateway.demo import DemoFailed

    answers = []
    for batch in batches:
        response = client.post("/models/churn@production:predict",
                               json={"instances": _records(batch)})  # fmt: skip
        if response.status_code != 200:
            raise DemoFailed(f":predict answered {response.status_code}: {response.text}")
        answers.append(response.json())
    rows = sum(len(a["predictions"]) for a in answers)
    churn = sum(sum(a["predictions"]) for a in answers) / rows
    demo.out.print(
        f"POST /v1/models/churn@production:predict x{len(batches)} ({shown}, {rows} rows) -> "
        f"200 from {answers[-1]['model']}; predicted churn {churn:.0%}",
        markup=False,
    )


def classic_step(demo: Demo) -> None:
    import importlib.util

    demo.say("6. A classic model: served, watched for drift, retrained, gated, labelled")
    if any(importlib.util.find_spec(m) is None for m in ("sklearn", "skops", "pandas", "scipy")):
        demo.out.print("skipped: install scikit-learn, skops, pandas and scipy "
                       "(pip install 'lockgate[evals]')")  # fmt: skip
        return
    folder = demo.root / "churn"
    folder.mkdir()
    script = folder / "train.py"
    script.write_text(TRAIN_PY)
    paths = _first_version(demo, folder, script)
    _serve_and_shift(demo)
    _detect_and_retrain(demo, folder, script, paths["suite"])


def _first_version(demo: Demo, folder: Path, script: Path) -> dict[str, Path]:
    import pandas as pd
    import yaml

    from lockgate.gateway.demo import _lockgate

    train, ref = folder / "churn-2024-q1.csv", folder / "churn-ref.csv"
    churn_frame(600, 1).to_csv(train, index=False)
    churn_frame(400, 2).to_csv(ref, index=False)
    holdout = pd.concat([churn_frame(100, 3), churn_frame(100, 4, shifted=True)])
    data = folder / "churn-holdout.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in json.loads(holdout.to_json(
        orient="records"))))  # fmt: skip
    demo.out.print("wrote a churn dataset (seeded numpy: tenure, spend, support calls, plan) "
                   "and train.py, a scikit-learn pipeline")  # fmt: skip
    _lockgate(demo, "dataset", "add", "churn-train", str(train))
    _lockgate(demo, "dataset", "add", "churn-ref", str(ref))
    model = folder / "model.skops"
    _train_by_hand(demo, script, train, model)
    _lockgate(demo, "model", "register", "churn", "--flavor", "sklearn", "--path", str(model),
              "--reference", "churn-ref@1", "--target", "churned",
              "-m", "logistic regression on 2024 Q1")  # fmt: skip
    suite = folder / "churn-holdout.yaml"

    def write_suite(model: str) -> None:
        suite.write_text(yaml.safe_dump({
            "name": "churn-holdout", "dataset": str(data), "reference": "churned",
            "target": {"kind": "sklearn", "model": model, "features": FEATURES},
            "scorers": ["accuracy"], "gates": ["accuracy >= 0.8"],
        }, sort_keys=False))  # fmt: skip

    write_suite("registry:churn@1")
    _lockgate(demo, "model", "gate", "churn", "production", "--suite", str(suite))
    _lockgate(demo, "eval", "run", str(suite), "-q")
    _lockgate(demo, "model", "label", "churn", "1", "production",
              "--reason", "churn-holdout passed")  # fmt: skip
    write_suite("registry:churn@production")  # what the retraining job measures: its new version
    return {"suite": suite}


def _serve_and_shift(demo: Demo) -> None:
    import httpx

    from lockgate.gateway.app import create_app
    from lockgate.gateway.background import ServerThread

    usual = churn_frame(100, 5)
    shifted = churn_frame(300, 6, shifted=True)
    with (
        ServerThread(create_app(demo.settings)) as gateway,
        httpx.Client(base_url=gateway.url + "/v1", timeout=30) as client,
    ):
        demo.out.print(f"gateway at {gateway.url}/v1 (gateway.predict.sample_rate: 1.0 keeps "
                       "up to 10 rows of every request for drift)")  # fmt: skip
        _predict(demo, client, [usual[i : i + 20] for i in range(0, 100, 20)], "usual customers")
        after = "after a promotion: newer customers, higher spend, more support calls"
        _predict(demo, client, [shifted[i : i + 20] for i in range(0, 300, 20)], after)
    # the gateway has stopped: every sampled row is written


def _detect_and_retrain(demo: Demo, folder: Path, script: Path, suite: Path) -> None:
    import yaml

    from lockgate.gateway.demo import DemoFailed, _lockgate

    _lockgate(demo, "drift", "check", "--reference", "model:churn@production#reference",
              "--current", "model:churn@production:1h", "--html", str(folder / "drift.html"),
              expect=1)  # fmt: skip
    recent = folder / "churn-2024-q3.csv"
    churn_frame(600, 7, shifted=True).to_csv(recent, index=False)
    demo.out.print("the labelled data of the promotion's customers arrives:", markup=False)
    _lockgate(demo, "dataset", "add", "churn-train", str(recent))
    policy = folder / "churn-drift.yaml"
    policy.write_text(yaml.safe_dump({
        "name": "churn-drift",
        "target": "churn@production",
        "signal": {"kind": "drift", "max_share_drifted": 0.5},
        "window": "1h",
        "min_samples": 100,
        "persistence": 1,
        "actions": [
            {"kind": "alert"},
            {"kind": "retrain", "dataset": "churn-train", "entry": [sys.executable, str(script)],
             "label": "production", "suite": str(suite)},
        ],
    }, sort_keys=False))  # fmt: skip
    demo.out.print(policy.read_text().rstrip(), markup=False, highlight=False)
    _lockgate(demo, "monitor", "run", str(policy), expect=1)
    _lockgate(demo, "finetune", "worker", "--once", "--kind", "command",
              "--work-dir", str(demo.root / "work"))  # fmt: skip
    job = demo.registry.jobs.list("command", limit=1)[0]
    if job.status != "succeeded" or not job.result.get("promoted"):
        raise DemoFailed(f"retraining job {job.id} ended {job.status}: {job.error or job.result}")
    _lockgate(demo, "finetune", "status", job.id)
    _lockgate(demo, "model", "history", "churn")
