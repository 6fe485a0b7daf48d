"""``POST /v1/models/{NAME@LABEL}:predict``: a registry scikit-learn model's predictions
(KServe v1 / TF-Serving ``instances``, MLflow's ``dataframe_records``, ``dataframe_split`` and
``inputs``); the work is :class:`gateway.predict.Predictor`'s, which checks the key before it
reads the body.

As for the proxy endpoints (:class:`gateway.app.ProxyRoute`), the route is served without
FastAPI's dependency solving: :class:`PredictRoute` describes it in the OpenAPI document, and
the router, once the path matches, calls :meth:`PredictRoute.serve`, a plain ASGI handler.
The app's fast path (:class:`gateway.app.GatewayApp`) calls the same :func:`serve_predict`
without the middleware stack and the router (about 0.3 ms of a request's CPU), so both
paths answer alike: :func:`predict_answer` turns an error into the response the app's own
exception handlers give.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from lockgate.gateway.api.answers import answered

PREFIX = "/v1/models/"
SUFFIX = ":predict"


def predict_path_model(path: str) -> str | None:
    """The model reference in a ``:predict`` path, as the route's ``{model:path}`` matches
    it; None for any other path."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX) and len(path) > len(PREFIX + SUFFIX):
        model = path[len(PREFIX) : -len(SUFFIX)]
        return None if "\n" in model else model  # the route's pattern: no line break
    return None


async def predict_answer(request: Request, model: str) -> Response:
    """The answer to a ``:predict`` request, errors included (:func:`answers.answered`)."""
    return await answered(request, request.app.state.gateway.predictor.handle(request, model))


async def serve_predict(scope: Scope, receive: Receive, send: Send, model: str) -> None:
    """Answer a ``:predict`` request whose path names ``model`` (ASGI)."""
    request = Request(scope, receive, send)
    await (await predict_answer(request, model))(scope, receive, send)


class PredictRoute(APIRoute):
    """The ``:predict`` route: documented by FastAPI, served by :meth:`serve`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = self.serve  # what the router calls once the path and method match

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_predict(scope, receive, send, scope["path_params"]["model"])


router = APIRouter(tags=["models"], route_class=PredictRoute)

_ROWS: dict[str, Any] = {
    "type": "array",
    "description": "Rows: each an object (column name to value) or a list of values in the "
    "order of the model's input schema, all of one form.",
    "items": {"oneOf": [{"type": "object"}, {"type": "array"}]},
}
_BODY: dict[str, Any] = {
    "type": "object",
    "description": "Exactly one of instances, dataframe_records, dataframe_split or inputs; "
    "any other field is a 400.",
    "properties": {
        "instances": _ROWS,
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "dataframe_split": {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "data": {"type": "array", "items": {"type": "array"}},
                "index": {"type": "array"},
            },
            "required": ["columns", "data"],
        },
        "inputs": {
            "oneOf": [
                {"type": "object", "additionalProperties": {"type": "array"}},
                _ROWS,
            ]
        },
        "parameters": {
            "type": "object",
            "properties": {
                "probabilities": {
                    "type": "boolean",
                    "description": "Add probabilities (predict_proba) and classes.",
                }
            },
        },
    },
}
_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["model", "predictions"],
    "properties": {
        "model": {"type": "string", "description": "NAME@VERSION that answered."},
        "predictions": {"type": "array"},
        "probabilities": {"type": "array", "items": {"type": "array"}},
        "classes": {"type": "array"},
    },
}


@router.post(
    "/v1/models/{model:path}:predict",
    summary="Predict with a registry scikit-learn model",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY}}},
        "responses": {
            "200": {
                "description": "Predictions",
                "content": {"application/json": {"schema": _ANSWER}},
            }
        },
    },
)
async def predict(model: str, request: Request) -> Response:
    """``model`` is a registry reference ``NAME@LABEL`` or ``NAME@VERSION`` (docs/gateway.md,
    "Classic models")."""
    return await predict_answer(request, model)  # for the OpenAPI document: serve answers
