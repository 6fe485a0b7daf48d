"""``POST /v1/models/{NAME@LABEL}:predict`` through a real gateway on loopback: a scikit-learn
pipeline trained here, saved with skops and registered with the real CLI (``lockgate model
register … --reference … --target …``), answered as its own ``predict`` answers, in each of
the four input formats; every bad input a 400 naming what is wrong; keys, limits, the span,
the call record and the sampled rows as for LLM calls."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lockgate.registry import RegistrySettings
from tests.conftest import Cli
from tests.gateway.conftest import Gateway, StartGateway

sio = pytest.importorskip("skops.io")
pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")

FEATURES = ["tenure", "spend", "plan", "promo"]
PREDICT = {"sample_rate": 1.0, "max_sample_rows_per_request": 3, "max_rows": 50,
           "sample_flush_interval_s": 0.05}  # fmt: skip


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tenure = rng.randint(0, 60)
        plan = rng.choice(["basic", "pro", "team"])
        promo = rng.random() < 0.3
        spend = round(rng.uniform(5, 200), 2)
        churned = int((tenure < 12 and plan == "basic") or (not promo and spend > 150))
        rows.append({"tenure": tenure, "spend": spend, "plan": plan, "promo": promo,
                     "churned": churned})  # fmt: skip
    return rows


def _pipeline(rows: list[dict[str, Any]]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame(rows)
    prepare = ColumnTransformer([
        ("num", StandardScaler(), ["tenure", "spend"]),
        ("cat", OneHotEncoder(), ["plan"]),
        ("flag", "passthrough", ["promo"]),
    ])  # fmt: skip
    model = Pipeline([("prepare", prepare), ("clf", LogisticRegression())])
    return model.fit(frame[FEATURES], frame["churned"])


@dataclass
class Served:
    gw: Gateway
    model: Any
    rows: list[dict[str, Any]]  # rows to predict, target column removed

    def post(self, ref: str, body: Any, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.gw.url}/v1/models/{ref}:predict", json=body, **kwargs)

    def expected(self, rows: list[dict[str, Any]] | None = None) -> list[Any]:
        frame = pd.DataFrame(rows or self.rows)[FEATURES]
        return list(self.model.predict(frame).tolist())


def _files(folder: Path) -> tuple[Any, Path, Path]:
    """A fitted pipeline, its .skops file and its reference dataset (JSONL, with the target)."""
    reference = _rows(200, seed=1)
    model = _pipeline(reference)
    path = folder / "churn.skops"
    sio.dump(model, path)
    data = folder / "reference.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in reference))
    return model, path, data


def _register(cli: Cli, path: Path, data: Path) -> dict[str, Any]:
    code, out, err = cli("dataset", "add", "churn-ref", str(data))
    assert code == 0, err
    code, out, err = cli(
        "model", "register", "churn", "--flavor", "sklearn", "--path", str(path),
        "--reference", "churn-ref", "--target", "churned", "--json",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = cli("model", "label", "churn", "1", "production", "--reason", "serve it")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def served(
    start_gateway: StartGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One gateway for the module; the model registered through the real CLI on its registry."""
    from typer.testing import CliRunner

    from lockgate.gateway.cli import app

    gw = start_gateway(predict=PREDICT)
    folder = tmp_path_factory.mktemp("predict")
    model, path, data = _files(folder)
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOCKGATE_DATA_DIR", str(gw.registry.settings.data_dir))
        env.delenv("LOCKGATE_DATABASE_URL", raising=False)
        env.delenv("LOCKGATE_CONFIG", raising=False)

        def cli(*args: str) -> tuple[int, str, str]:
            result = runner.invoke(app, list(args))
            return result.exit_code, result.stdout, result.stderr

        _register(cli, path, data)
    rows = [{k: v for k, v in r.items() if k != "churned"} for r in _rows(40, seed=2)]
    yield Served(gw, model, rows)


def test_cli_records_the_schema_and_the_gateway_serves_it(
    cli: Cli, start_gateway: StartGateway, registry_settings: RegistrySettings, tmp_path: Path
) -> None:
    """On SQLite and PostgreSQL: register with --reference/--target, predict, rows sampled."""
    model, path, data = _files(tmp_path)
    registered = _register(cli, path, data)
    assert registered["spec"]["reference"] == "churn-ref@1"
    assert registered["spec"]["target"] == "churned"
    assert registered["spec"]["input_schema"] == [
        {"name": "tenure", "kind": "numeric", "nullable": False},
        {"name": "spend", "kind": "numeric", "nullable": False},
        {"name": "plan", "kind": "categorical", "nullable": False},
        {"name": "promo", "kind": "bool", "nullable": False},
    ]
    code, out, _ = cli("model", "register", "churn", "--flavor", "sklearn", "--path", str(path),
                       "--reference", "churn-ref", "--target", "churned")  # fmt: skip
    assert code == 0 and "unchanged, already churn@1" in out, out
    for args, message in [
        (["--reference", "churn-ref", "--target", "nope"], "target column 'nope' is not a column"),
        (["--target", "churned"], "a target column needs a reference dataset"),
        (["--reference", "missing-ds"], "missing-ds"),
    ]:
        code, _, err = cli("model", "register", "x", "--flavor", "sklearn", "--path", str(path),
                           *args)  # fmt: skip
        assert code == 2 and message in err, err
    code, _, err = cli("model", "register", "u", "--flavor", "upstream", "--model", "openai/x",
                       "--reference", "churn-ref")  # fmt: skip
    assert code == 2 and "takes none" in err, err

    gw = start_gateway(registry_settings, predict=PREDICT)
    rows = [{k: v for k, v in r.items() if k != "churned"} for r in _rows(7, seed=3)]
    resp = httpx.post(f"{gw.url}/v1/models/churn@production:predict", json={"instances": rows},
                      headers={"x-request-id": "pg-or-sqlite"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "model": "churn@1", "predictions": model.predict(pd.DataFrame(rows)).tolist()
    }  # fmt: skip
    samples = _samples(gw, "churn", 3)
    assert {s.request_id for s in samples} == {"pg-or-sqlite"}
    assert all(s.inputs in rows for s in samples)


def _samples(gw: Gateway, model: str, count: int, timeout: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        samples = gw.registry.predictions.samples(model)
        if len(samples) >= count or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_predictions_are_the_models_own(served: Served) -> None:
    resp = served.post("churn@production", {"instances": served.rows})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body == {"model": "churn@1", "predictions": served.expected()}
    assert len(set(body["predictions"])) == 2  # both classes occur: the comparison means something


def test_every_input_format_gives_the_same_answer(served: Served) -> None:
    rows = served.rows
    positional = [[r[c] for c in FEATURES] for r in rows]
    shuffled = ["promo", "plan", "tenure", "spend"]  # dataframe_split names its own order
    bodies = {
        "instances as objects": {"instances": rows},
        "instances as lists": {"instances": positional},
        "dataframe_records": {"dataframe_records": rows},
        "dataframe_split": {
            "dataframe_split": {
                "columns": shuffled, "data": [[r[c] for c in shuffled] for r in rows],
                "index": list(range(len(rows))),
            }
        },
        "inputs as columns": {"inputs": {c: [r[c] for r in rows] for c in FEATURES}},
        "inputs as rows": {"inputs": rows},
    }  # fmt: skip
    expected = served.expected()
    for name, body in bodies.items():
        resp = served.post("churn@1", body)
        assert resp.status_code == 200, (name, resp.text)
        assert resp.json()["predictions"] == expected, name


def test_probabilities_when_asked(served: Served) -> None:
    resp = served.post("churn@production", {"instances": served.rows[:5],
                                            "parameters": {"probabilities": True}})  # fmt: skip
    assert resp.status_code == 200, resp.text
    body = resp.json()
    frame = pd.DataFrame(served.rows[:5])[FEATURES]
    assert body["classes"] == [0, 1]
    assert body["probabilities"] == served.model.predict_proba(frame).tolist()
    assert body["predictions"] == served.expected(served.rows[:5])
    plain = served.post("churn@production", {"instances": served.rows[:5],
                                             "parameters": {"probabilities": False}})  # fmt: skip
    assert set(plain.json()) == {"model", "predictions"}


def test_a_model_without_predict_proba_refuses_probabilities(served: Served) -> None:
    from sklearn.linear_model import LinearRegression

    reg = served.gw.registry
    frame = pd.DataFrame(_rows(50, seed=4))
    regressor = LinearRegression().fit(frame[["tenure", "spend"]], frame["churned"])
    reg.models.register_sklearn("spend-reg", regressor, reference="churn-ref",
                                target="churned")  # fmt: skip
    rows = [{"tenure": 3, "spend": 10.0}]
    ok = served.post("spend-reg@latest", {"instances": rows})
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"] == pytest.approx(regressor.predict(pd.DataFrame(rows)).tolist())
    resp = served.post("spend-reg@latest", {"instances": rows,
                                            "parameters": {"probabilities": True}})  # fmt: skip
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert "no predict_proba" in error["message"] and error["param"] == "parameters.probabilities"


ROW = {"tenure": 5, "spend": 20.5, "plan": "pro", "promo": False}
BAD = [
    ({"instances": [{k: v for k, v in ROW.items() if k != "plan"}]}, "instances[0].plan",
     "missing column 'plan'"),
    ({"instances": [ROW, {**ROW, "zip": "12345"}]}, "instances[1].zip", "unknown column 'zip'"),
    ({"instances": [ROW, {**ROW, "tenure": "five"}]}, "instances[1].tenure",
     "column 'tenure' is numeric and takes a number, not str 'five'"),
    ({"instances": [{**ROW, "plan": 3}]}, "instances[0].plan", "takes a string, not int 3"),
    ({"instances": [{**ROW, "promo": 1}]}, "instances[0].promo", "takes true or false"),
    ({"instances": [{**ROW, "spend": None}]}, "instances[0].spend", "not null"),
    ({"instances": [{**ROW, "tenure": True}]}, "instances[0].tenure", "not bool True"),
    ({"instances": [[5, 20.5, "pro"]]}, "instances[0]", "has 3 values; the model takes 4"),
    ({"instances": [ROW, [5, 20.5, "pro", False]]}, "instances[1]", "is not an object"),
    ({"instances": []}, "instances", "holds no rows"),
    ({"instances": {"tenure": 5}}, "instances", "must be a list of rows"),
    ({"instances": [ROW], "model": "x"}, "model", "unknown field(s) 'model'"),
    ({"instances": [ROW], "api_base": "http://x"}, "api_base", "unknown field(s) 'api_base'"),
    ({"instances": [ROW], "inputs": [ROW]}, "inputs", "exactly one of"),
    ({}, "instances", "found none of them"),
    ({"instances": [ROW], "parameters": {"probabilities": "yes"}}, "parameters.probabilities",
     "true or false"),
    ({"instances": [ROW], "parameters": {"top_k": 1}}, "parameters.top_k", "unknown parameter"),
    ({"dataframe_split": {"columns": ["tenure", "spend", "plan"], "data": [[1, 2.0, "pro"]]}},
     "dataframe_split.columns.promo", "missing column 'promo'"),
    ({"dataframe_split": {"columns": FEATURES, "data": [[1, 2.0, "pro"]]}},
     "dataframe_split.data[0]", "has 3 values"),
    ({"dataframe_split": {"columns": FEATURES, "data": [[1, 2.0, "pro", "no"]]}},
     "dataframe_split.data[0].promo", "takes true or false"),
    ({"dataframe_split": {"columns": FEATURES, "data": [], "orient": "split"}},
     "dataframe_split.orient", "unknown field 'orient'"),
    ({"inputs": {"tenure": [1], "spend": [2.0], "plan": ["pro"], "promo": [True, False]}},
     "inputs", "different lengths"),
    ({"inputs": {"tenure": [1], "spend": [2.0], "plan": ["pro"], "promo": ["x"]}},
     "inputs.promo[0]", "takes true or false"),
    ({"dataframe_records": [{**ROW, "plan": "gold"}]}, "dataframe_records",
     "could not predict these rows"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "param", "message"), BAD)
def test_bad_input_is_a_400_naming_it(
    served: Served, body: dict[str, Any], param: str, message: str
) -> None:
    resp = served.post("churn@production", body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and message in error["message"], error
    assert error["type"] == "invalid_request_error"


def test_bodies_that_are_not_json_objects(served: Served) -> None:
    url = f"{served.gw.url}/v1/models/churn@production:predict"
    for content in (b"[1, 2]", b"{not json", b"[" * 300 + b"]" * 300):
        resp = httpx.post(url, content=content, headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
    assert (
        httpx.post(url, content=b"a=1", headers={"content-type": "text/plain"}).status_code == 415
    )


def test_too_many_rows_is_a_413(served: Served) -> None:
    resp = served.post("churn@production", {"instances": [ROW] * 51})
    assert resp.status_code == 413
    assert "gateway.predict.max_rows" in resp.json()["error"]["message"]
    assert served.post("churn@production", {"instances": [ROW] * 50}).status_code == 200


@pytest.mark.parametrize(
    ("ref", "status", "message"),
    [
        ("..%2F..%2Fetc%2Fpasswd", 400, "never a path"),
        ("churn%2F..%2F..%2Fsecret@1", 400, "never a path"),
        ("%2Ftmp%2Fmodel.skops", 400, "never a path"),
        ("churn@Bad!", 400, "invalid label"),
        ("@production", 400, "not a registry reference"),
        ("nobody@production", 404, "nobody"),
        ("churn@staging", 404, "no label 'staging'"),
        ("churn@99", 404, "no version 99"),
    ],
)
def test_model_names_are_registry_references(
    served: Served, ref: str, status: int, message: str
) -> None:
    resp = served.post(ref, {"instances": [ROW]})
    assert resp.status_code == status, resp.text
    assert message in resp.json()["error"]["message"]


def test_registry_prefix_and_versions_are_accepted(served: Served) -> None:
    for ref in ("registry:churn@production", "churn@v1", "churn"):
        resp = served.post(ref, {"instances": [ROW]})
        assert resp.status_code == 200 and resp.json()["model"] == "churn@1", (ref, resp.text)


def test_models_that_cannot_be_predicted(served: Served, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    reg = served.gw.registry
    reg.models.register("chatty", "upstream", {"model": "openai/stub-model"})
    resp = served.post("chatty@latest", {"instances": [ROW]})
    assert resp.status_code == 400 and "cannot be predicted" in resp.json()["error"]["message"]
    reg.models.register_sklearn("bare", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    resp = served.post("bare@latest", {"instances": [[0.5]]})
    assert resp.status_code == 400
    assert "without a reference dataset" in resp.json()["error"]["message"]
    ids = [m["id"] for m in httpx.get(served.gw.url + "/v1/models").json()["data"]]
    assert "registry:churn@production" in ids and "registry:churn@latest" in ids
    assert "registry:chatty@latest" in ids
    assert not [i for i in ids if "bare" in i], ids  # the gateway could not serve it


def test_one_span_and_one_call_record_per_request(served: Served) -> None:
    gw = served.gw
    gw.spans.clear()
    resp = served.post("churn@production", {"instances": served.rows[:10]},
                       headers={"x-request-id": "predict-ok"})  # fmt: skip
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "predict-ok"
    served.post("churn@production", {"instances": [{**ROW, "tenure": "x"}]},
                headers={"x-request-id": "predict-bad"})  # fmt: skip
    spans = gw.wait_spans(2)
    ok = next(s for s in spans if s.attributes["lockgate.request_id"] == "predict-ok")  # type: ignore[index]
    assert ok.name == "predict churn@1"
    attributes = dict(ok.attributes or {})
    assert attributes["lockgate.model.name"] == "churn"
    assert attributes["lockgate.model.version"] == 1
    assert attributes["lockgate.model.requested"] == "churn@production"
    assert attributes["lockgate.predict.rows"] == 10
    assert attributes["lockgate.predict.duration_ms"] > 0
    assert attributes["http.response.status_code"] == 200
    bad = next(s for s in spans if s.attributes["lockgate.request_id"] == "predict-bad")  # type: ignore[index]
    assert bad.attributes["error.type"] == "invalid_request"  # type: ignore[index]

    record = gw.record("predict-ok")
    assert (record["operation"], record["model"], record["route"], record["status_code"]) == (
        "predict", "churn@1", "churn@production", 200,
    )  # fmt: skip
    assert record["latency_ms"] > 0 and record["trace_id"] == format(ok.context.trace_id, "032x")
    failed = gw.record("predict-bad")
    assert (failed["operation"], failed["status_code"], failed["error_type"]) == (
        "predict", 400, "invalid_request",
    )  # fmt: skip


def test_sampled_rows_are_kept_and_bounded(served: Served) -> None:
    rows = served.rows[:20]
    resp = served.post("churn@production", {"instances": rows},
                       headers={"x-request-id": "sampled-20"})  # fmt: skip
    assert resp.status_code == 200
    predictions = resp.json()["predictions"]
    deadline = time.monotonic() + 5
    while True:
        mine = [s for s in served.gw.registry.predictions.samples("churn@1")
                if s.request_id == "sampled-20"]  # fmt: skip
        if len(mine) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(mine) == 3  # max_sample_rows_per_request, though all 20 rows were predicted
    for sample in mine:
        index = rows.index(sample.inputs)
        assert sample.prediction == predictions[index]
        assert (sample.model, sample.version) == ("churn", 1) and len(sample.trace_id) == 32


def test_no_samples_at_rate_zero(start_gateway: StartGateway, served: Served) -> None:
    gw = start_gateway(served.gw.registry.settings, predict={**PREDICT, "sample_rate": 0.0})
    before = len(gw.registry.predictions.samples("churn", limit=10_000))
    resp = httpx.post(
        f"{gw.url}/v1/models/churn@production:predict",
        json={"instances": served.rows}, headers={"x-request-id": "unsampled"},
    )  # fmt: skip
    assert resp.status_code == 200
    gw.record("unsampled")  # the call is recorded
    time.sleep(0.3)  # several flush intervals
    samples = gw.registry.predictions.samples("churn", limit=10_000)
    assert len(samples) == before and "unsampled" not in {s.request_id for s in samples}


def test_keys_scopes_and_limits_apply(start_gateway: StartGateway, served: Served) -> None:
    gw = start_gateway(served.gw.registry.settings, predict=PREDICT, auth="required")
    reg = gw.registry
    url = f"{gw.url}/v1/models/churn@production:predict"
    body = {"instances": [ROW]}

    def post(key: str | None, target: str = url) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.post(target, json=body, headers=headers)

    assert post(None).status_code == 401
    assert post("lg-not-a-key").status_code == 401
    assert httpx.post(url, content=b"{broken", headers={}).status_code == 401  # key first
    reader = reg.keys.create("reader", scopes=["registry:read"])
    resp = post(reader.secret)
    assert resp.status_code == 403 and "'inference'" in resp.json()["error"]["message"]
    other = reg.keys.create("other-models", models=["gpt-test", "registry:churn@latest"])
    resp = post(other.secret)
    assert resp.status_code == 403 and "may not use model" in resp.json()["error"]["message"]
    assert post(other.secret, url.replace("@production", "@latest")).status_code == 200
    allowed = reg.keys.create("churn-only", models=["registry:churn@production"], rpm=2)
    assert post(allowed.secret).status_code == 200
    assert post(allowed.secret).status_code == 200
    limited = post(allowed.secret)
    assert limited.status_code == 429 and limited.headers.get("retry-after")
    assert limited.json()["error"]["code"] == "rpm_limit"
