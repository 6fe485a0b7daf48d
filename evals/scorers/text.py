"""Scorers on the output text: exact match, contains, regex, JSON, JSON Schema, numbers."""

from __future__ import annotations

import json
import math
import re
import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lockgate.evals.errors import ScorerInvalid
from lockgate.evals.records import ExampleResult, ExampleScore
from lockgate.evals.scorers._base import BaseScorer, register, text_of
from lockgate.registry._extras import require

_PUNCT = str.maketrans("", "", string.punctuation)


class Normalise(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case: bool = Field(default=False, description="Compare case-sensitively.")
    whitespace: bool = Field(default=True, description="Collapse runs of whitespace.")
    punctuation: bool = Field(default=False, description="Drop ASCII punctuation.")
    strip: bool = Field(default=True, description="Strip leading/trailing whitespace.")

    def apply(self, text: str) -> str:
        if not self.case:
            text = text.casefold()
        if self.punctuation:
            text = text.translate(_PUNCT)
        if self.whitespace:
            text = " ".join(text.split())
        if self.strip:
            text = text.strip()
        return text


def _references(value: Any) -> list[str]:
    return [text_of(v) for v in value] if isinstance(value, list) else [text_of(value)]


@register("exact_match")
class ExactMatch(BaseScorer):
    """1 when the normalised output equals the (or any) normalised reference."""

    binary = True
    Params = Normalise

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        out = self.params.apply(text_of(sample.output))
        refs = [self.params.apply(r) for r in _references(sample.reference)]
        return ExampleScore(float(out in refs))


class ContainsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str | None = Field(default=None, description="Fixed text; default: the reference.")


@register("contains")
class Contains(BaseScorer):
    binary = True
    Params = ContainsParams
    fold = False

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        needles = (
            [self.params.value] if self.params.value is not None else _references(sample.reference)
        )
        out = text_of(sample.output)
        if self.fold:
            out, needles = out.casefold(), [n.casefold() for n in needles]
        return ExampleScore(float(any(n in out for n in needles)))


@register("icontains")
class IContains(Contains):
    fold = True


class RegexParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: str | None = Field(default=None, description="Default: the reference is the pattern.")
    ignore_case: bool = False
    full: bool = Field(default=False, description="The whole output must match.")


@register("regex")
class Regex(BaseScorer):
    binary = True
    Params = RegexParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flags = re.IGNORECASE if self.params.ignore_case else 0
        self._fixed = self._compile(self.params.pattern) if self.params.pattern else None

    def _compile(self, pattern: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern, self._flags)
        except re.error as exc:
            raise ScorerInvalid(
                f"scorer regex ({self.metric}): bad pattern {pattern!r}: {exc}",
                param=f"scorers.{self.metric}.pattern",
            ) from exc

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        rx = self._fixed or self._compile(text_of(sample.reference))
        out = text_of(sample.output)
        hit = rx.fullmatch(out.strip()) if self.params.full else rx.search(out)
        return ExampleScore(float(hit is not None))


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


@register("json_valid")
class JsonValid(BaseScorer):
    """1 when the output (optionally inside a ``` fence) parses as JSON."""

    binary = True

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        try:
            json.loads(_strip_fence(text_of(sample.output)))
        except ValueError as exc:
            return ExampleScore(0.0, detail={"error": str(exc)})
        return ExampleScore(1.0)


class SchemaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] = Field(alias="schema")


@register("json_schema")
class JsonSchema(BaseScorer):
    """1 when the output is JSON valid against ``schema`` (jsonschema, any draft)."""

    binary = True
    Params = SchemaParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        jsonschema = require("jsonschema", feature="JSON Schema scoring", extra="evals")
        schema = self.params.json_schema
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ScorerInvalid(
                f"scorer json_schema ({self.metric}): the schema is invalid: {exc.message}",
                param=f"scorers.{self.metric}.schema",
            ) from exc
        self._validator = cls(schema)

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        try:
            doc = json.loads(_strip_fence(text_of(sample.output)))
        except ValueError as exc:
            return ExampleScore(0.0, detail={"error": f"not JSON: {exc}"})
        errors = [e.message for e in self._validator.iter_errors(doc)]
        return ExampleScore(float(not errors), detail={"errors": errors[:5]} if errors else None)


class NumericParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    abs_tol: float = Field(default=0.0, ge=0)
    rel_tol: float = Field(default=0.0, ge=0)


_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_number(value: Any) -> float | None:
    """The number in ``value``: a number itself, or the first number in its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _NUMBER.search(text_of(value))
    if match is None:
        return None
    try:
        return float(match.group().replace(",", ""))
    except ValueError:
        return None


@register("numeric")
class Numeric(BaseScorer):
    """1 when the first number in the output is within tolerance of the reference."""

    binary = True
    Params = NumericParams

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        got, want = parse_number(sample.output), parse_number(sample.reference)
        if got is None or want is None:
            return ExampleScore(0.0, detail={"error": "no number found"})
        ok = math.isclose(got, want, rel_tol=self.params.rel_tol, abs_tol=self.params.abs_tol)
        return ExampleScore(float(ok), detail={"parsed": got})
