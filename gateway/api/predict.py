"""``POST /v1/models/{NAME@LABEL}:predict``: a registry scikit-learn model's predictions
(KServe v1 / TF-Serving ``instances``, MLflow's ``dataframe_records``, ``dataframe_split`` and
``inputs``); the work is :class:`gateway.predict.Predictor`'s. The route declares no body
parameter, so the key is checked before the body is read (see :mod:`gateway.api.deps`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.api.deps import StateDep

router = APIRouter(tags=["models"])

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
async def predict(model: str, request: Request, state: StateDep) -> Response:
    """``model`` is a registry reference ``NAME@LABEL`` or ``NAME@VERSION`` (docs/gateway.md,
    "Classic models")."""
    return await state.predictor.handle(request, model)
