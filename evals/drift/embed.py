"""Embeddings computed through an OpenAI-compatible ``/v1/embeddings`` (the lockgate gateway,
or any provider), so that a text column can be checked as an embedding column::

    from lockgate.evals.drift import DriftOptions, check_drift
    from lockgate.evals.drift.embed import embed_column

    vectors = embed_column(frame["question"], base_url="http://127.0.0.1:8080/v1",
                           api_key=key, model="text-embedding-3-small")
    frame["question_emb"] = list(vectors)             # one vector per row
    check_drift(reference, frame, DriftOptions(embedding_columns=["question_emb"]))

The texts go in batches of ``batch_size`` (one request each, in order) through the ``openai``
SDK (it comes with lockgate: litellm depends on it). Each answer must hold one finite vector
per text, all of the same length; the vectors are put back in the texts' order by their
``index``. Anything else, and an HTTP error, is a :class:`DriftError` that says which batch
and why. Embed the reference and the current data with the same model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.evals.drift.errors import DriftError, DriftInputInvalid

Floats = npt.NDArray[np.float64]

DEFAULT_BATCH_SIZE = 128


def embed_column(
    texts: Iterable[Any],
    *,
    base_url: str,
    api_key: str,
    model: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dimensions: int | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
) -> Floats:
    """One embedding per text, as a ``(len(texts), dim)`` float64 array.

    ``texts``: strings (a pandas Series, a list); a missing or non-string cell is an error
    (drop missing rows first). ``dimensions`` is passed on for models that take it.
    """
    import openai

    if batch_size < 1:
        raise DriftInputInvalid("batch_size must be at least 1", param="batch_size")
    items = list(texts.tolist() if hasattr(texts, "tolist") else texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise DriftInputInvalid(
                f"text {i} is a {type(text).__name__}, not a string; drop missing rows before "
                "embedding",
                param="texts",
            )
    client = openai.OpenAI(
        base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
    )
    rows: list[Floats] = []
    dim: int | None = None
    extra: dict[str, Any] = {} if dimensions is None else {"dimensions": dimensions}
    try:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            where = f"texts {start}..{start + len(batch) - 1}"
            try:
                answer = client.embeddings.create(
                    model=model, input=batch, encoding_format="float", **extra
                )
            except openai.APIStatusError as exc:
                raise DriftError(
                    f"the embeddings endpoint answered HTTP {exc.status_code} for {where}: "
                    f"{_message(exc)}"
                ) from exc
            except openai.APIError as exc:
                raise DriftError(f"the embeddings request for {where} failed: {exc}") from exc
            vectors = _vectors(answer, len(batch), where)
            for vector in vectors:
                if dim is None:
                    dim = vector.size
                elif vector.size != dim:
                    raise DriftError(
                        f"the embeddings endpoint answered vectors of {vector.size} numbers for "
                        f"{where} and of {dim} before"
                    )
            rows.extend(vectors)
    finally:
        client.close()
    if not rows:
        return np.empty((0, dimensions or 0), dtype=np.float64)
    return np.vstack(rows)


def _vectors(answer: Any, count: int, where: str) -> list[Floats]:
    data = list(getattr(answer, "data", None) or [])
    if len(data) != count:
        raise DriftError(
            f"the embeddings endpoint answered {len(data)} vectors for {count} texts ({where})"
        )
    by_index: dict[int, Floats] = {}
    for item in data:
        index = getattr(item, "index", None)
        if not isinstance(index, int) or not 0 <= index < count or index in by_index:
            raise DriftError(f"the embeddings answer for {where} has a bad index {index!r}")
        raw = getattr(item, "embedding", None)
        if not isinstance(raw, list) or not raw:
            raise DriftError(
                f"the embeddings answer for {where} holds no vector of numbers at index {index} "
                "(ask for encoding_format float)"
            )
        try:
            vector = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DriftError(
                f"the embeddings answer for {where} holds a non-numeric vector at index {index}"
            ) from exc
        if vector.ndim != 1 or not np.isfinite(vector).all():
            raise DriftError(
                f"the embeddings answer for {where} holds a vector with NaN, ±inf or nesting at "
                f"index {index}"
            )
        by_index[index] = vector
    return [by_index[i] for i in range(count)]


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
    text = str(getattr(exc, "message", "") or exc)
    return text[:300] or "no message"
