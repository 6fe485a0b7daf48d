""":predict has one implementation, however a request reaches it, and the parts cut for speed
(issue 12: the overhead over the model's own ``predict``) answer as the slow ones did.

:class:`gateway.app.GatewayApp` answers ``POST /v1/models/{NAME@LABEL}:predict`` from the ASGI
scope (the fast path); with a middleware added, the request goes through FastAPI's stack and
router to :class:`gateway.api.predict.PredictRoute`. Both end in
:func:`gateway.api.predict.serve_predict`; the same requests to a gateway of each kind, on one
registry, must come back alike.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lockgate.gateway.api.predict import predict_path_model
from lockgate.gateway.app import create_app
from lockgate.gateway.predict import frame_builder
from lockgate.gateway.predict_inputs import Schema, parse_request
from lockgate.registry import Registry, RegistrySettings
from lockgate.registry.input_schema import InputColumn
from tests.gateway.conftest import gateway_settings
from tests.gateway.servers import ServerThread
from tests.gateway.test_proxy_paths import PassThrough
from tests.gateway.upstream import Upstream

FEATURES = ["tenure", "spend", "plan"]


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        row: dict[str, Any] = {"tenure": rng.randint(0, 60), "spend": round(rng.uniform(5, 200), 2),
                               "plan": rng.choice(["basic", "pro"])}  # fmt: skip
        row["churned"] = int(row["tenure"] < 12)
        out.append(row)
    return out


@pytest.fixture(scope="module")
def pair(
    upstream: Upstream, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """(fast URL, routed URL, a key)."""
    data_dir = tmp_path_factory.mktemp("predict-paths")
    shutil.copy(sqlite_template, data_dir / "registry.db")
    settings = RegistrySettings(data_dir=data_dir)
    registry = Registry(settings, actor="tester")
    reference = _rows(200, seed=1)
    data = data_dir / "reference.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in reference))
    frame = pd.DataFrame(reference)
    prepare = ColumnTransformer([
        ("num", StandardScaler(), ["tenure", "spend"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
    ])  # fmt: skip
    model = Pipeline([("prepare", prepare), ("clf", LogisticRegression())])
    model.fit(frame[FEATURES], frame["churned"])
    registry.datasets.add("ref", data)
    registry.models.register_sklearn("churn", model, reference="ref", target="churned")
    registry.labels.set("model", "churn", "production", 1, reason="test")
    key = registry.keys.create("full").secret
    app_settings = gateway_settings(upstream.url, settings)  # type: ignore[attr-defined]
    routed_app = create_app(app_settings)
    routed_app.add_middleware(PassThrough)
    fast, routed = ServerThread(create_app(app_settings)).start(), ServerThread(routed_app).start()
    try:
        yield fast.url, routed.url, key
    finally:
        fast.stop()
        routed.stop()
        registry.close()


ROWS = [{k: r[k] for k in FEATURES} for r in _rows(100, seed=2)]
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    # name: (method and path, key, request)
    "instances": ("POST /v1/models/churn@production:predict", "key", {"json": {"instances": ROWS}}),
    "split + probabilities": ("POST /v1/models/churn@1:predict", "key", {"json": {
        "dataframe_split": {"columns": FEATURES, "data": [[r[k] for k in FEATURES] for r in ROWS]},
        "parameters": {"probabilities": True}}}),
    "bad value": ("POST /v1/models/churn@1:predict", "key",
                  {"json": {"instances": [*ROWS[:57], {**ROWS[0], "tenure": True}]}}),
    "unknown model": ("POST /v1/models/nobody@production:predict", "key",
                      {"json": {"instances": ROWS}}),
    "path-like model": ("POST /v1/models/a//b@1:predict", "key", {"json": {"instances": ROWS}}),
    "line break in the model": ("POST /v1/models/churn%0A@1:predict", "key",
                                {"json": {"instances": ROWS}}),
    "empty model": ("POST /v1/models/:predict", "key", {"json": {"instances": ROWS}}),
    "no key": ("POST /v1/models/churn@1:predict", "", {"json": {"instances": ROWS}}),
    "not json": ("POST /v1/models/churn@1:predict", "key",
                 {"content": b"{nope", "headers": {"content-type": "application/json"}}),
    "text body": ("POST /v1/models/churn@1:predict", "key",
                  {"content": b"hi", "headers": {"content-type": "text/plain"}}),
    "GET": ("GET /v1/models/churn@1:predict", "key", {}),
}  # fmt: skip


def _answer(base: str, target: str, key: str, request: dict[str, Any]) -> tuple[Any, ...]:
    method, path = target.split(" ", 1)
    headers = {"x-request-id": "req-same", **request.pop("headers", {})}
    if key:
        headers["authorization"] = f"Bearer {key}"
    with httpx.Client(base_url=base, timeout=30) as client:
        response = client.request(method, path, headers=headers, **request)
    body: Any = response.content
    if response.headers.get("content-type", "").startswith("application/json"):
        body = json.loads(body)
    return response.status_code, response.headers.get("x-request-id"), body


@pytest.mark.parametrize("case", list(CASES))
def test_the_fast_path_answers_as_the_router_does(pair: tuple[str, str, str], case: str) -> None:
    fast, routed, key = pair
    target, who, request = CASES[case]
    seen = PassThrough.seen
    got = _answer(fast, target, key if who else "", dict(request))
    want = _answer(routed, target, key if who else "", dict(request))
    assert got == want, case
    # only the routed gateway's middleware saw it (a 415 is answered before any middleware)
    assert PassThrough.seen == seen + (case != "text body")
    status = got[0]
    expected = {"instances": 200, "split + probabilities": 200, "bad value": 400,
                "unknown model": 404, "path-like model": 400, "line break in the model": 404,
                "empty model": 400, "no key": 401, "not json": 400, "text body": 415,
                "GET": 405}[case]  # fmt: skip
    assert status == expected, got
    if case == "bad value":
        assert got[2]["error"]["param"] == "instances[57].tenure"


def test_the_path_gives_the_model_as_the_route_pattern_does() -> None:
    assert predict_path_model("/v1/models/churn@production:predict") == "churn@production"
    assert predict_path_model("/v1/models/a/b@1:predict:predict") == "a/b@1:predict"
    for path in ("/v1/models/:predict", "/v1/models/x", "/v1/models/x:predictx",
                 "/v1/chat/completions", "/v1/models/a\nb:predict"):  # fmt: skip
        assert predict_path_model(path) is None, path


SCHEMA = Schema.of([InputColumn("n", "numeric", False), InputColumn("m", "numeric", True),
                    InputColumn("b", "bool", False), InputColumn("c", "categorical", True),
                    InputColumn("s", "string", False)])  # fmt: skip


@pytest.mark.parametrize(
    "columns",
    [
        {"n": [1, 2, 3], "m": [1.5, None, 2.0], "b": [True, False, True],
         "c": ["x", None, "y"], "s": ["a", "b", "c"]},
        {"n": [1.0], "m": [None], "b": [False], "c": [None], "s": [""]},
    ],
)  # fmt: skip
def test_the_frame_is_the_public_constructors(columns: dict[str, list[Any]]) -> None:
    names = list(columns)
    arrays = [np.array(columns["n"]), np.array(columns["m"], dtype=np.float64), columns["b"],
              columns["c"], columns["s"]]  # fmt: skip
    built = frame_builder(pd, names)(list(arrays))
    pd.testing.assert_frame_equal(built, pd.DataFrame(dict(zip(names, arrays, strict=True))))

    class Old:  # a pandas without DataFrame._from_arrays: the public constructor
        DataFrame = type("DataFrame", (pd.DataFrame,), {"_from_arrays": None})
        Index = pd.Index

    old = frame_builder(Old, names)(list(arrays))
    pd.testing.assert_frame_equal(old, built, check_frame_type=False)


def _param(body: dict[str, Any]) -> str | None:
    try:
        parse_request(body, SCHEMA, 10_000)
    except Exception as exc:  # the InvalidRequest under test
        return str(getattr(exc, "param", None))
    return None


def test_the_quick_checks_still_name_the_first_bad_row() -> None:
    row = {"n": 1, "m": None, "b": True, "c": "x", "s": "t"}
    good = [dict(row) for _ in range(100)]
    assert _param({"instances": good}) is None
    assert _param({"instances": [*good[:70], {**row, "n": True}, *good]}) == "instances[70].n"
    assert _param({"instances": [*good[:70], {**row, "n": "1"}]}) == "instances[70].n"
    extra = {**row, "z": 1}
    assert _param({"instances": [*good[:42], extra, *good]}) == "instances[42].z"
    assert _param({"instances": [*good[:9], [1, None, True, "x", "t"]]}) == "instances[9]"
    lists = [[1, None, True, "x", "t"]] * 100
    assert _param({"instances": lists}) is None
    assert _param({"instances": [*lists[:63], [1, None, True, "x"]]}) == "instances[63]"
    assert _param({"instances": [*lists[:5], row]}) == "instances[5]"
    split = {"columns": list(row), "data": lists}
    assert _param({"dataframe_split": split}) is None
    bad = {"columns": list(row), "data": [*lists[:80], [1, None, True, "x", "t", 0]]}
    assert _param({"dataframe_split": bad}) == "dataframe_split.data[80]"
    nulls = {"columns": list(row), "data": [*lists[:3], [None, None, True, "x", "t"]]}
    assert _param({"dataframe_split": nulls}) == "dataframe_split.data[3].n"
    parsed = parse_request({"instances": lists}, SCHEMA, 10_000)
    assert parsed.columns["c"] == ["x"] * 100 and parsed.rows == 100
