"""Sandboxed, strict, bounded prompt templates (Jinja2 ``{{ var }}`` syntax).

A template is parsed once at push time: a syntax error is rejected with its line, and the
variables it takes are extracted and stored with the version. Rendering is strict both
ways: a missing variable and an unknown extra variable are errors naming them. Values are
inserted as text and never evaluated as template code.

Rendering is bounded, so that a template cannot exhaust the process that renders it:

- loop iterations, over everything a render loops over, at most :data:`MAX_ITERATIONS`;
- characters written (top-level output and every captured block together), and the size of
  every value an expression builds (``*``, ``+``, ``~``, ``%``, filters and method calls),
  at most :data:`MAX_OUTPUT_CHARS`; amplifying operations are checked *before* they run
  (``'a' * 10**8``, ``'x'|center(10**9)``, ``s.replace('', big)``, ``'{:>999999999}'``);
- integers at most :data:`MAX_INT_BITS` bits (``10 ** 10 ** 8`` is refused, not computed);
- ``range`` at most :data:`MAX_ITERATIONS` long; ``lipsum`` is not available;
- wall time at most :data:`MAX_RENDER_S`, checked at every loop step, call and write.

Past a bound is :class:`~registry.errors.TemplateLimitExceeded` (400, ``template_limit``);
any other failure of the template's own code is an :class:`~registry.errors.InvalidInput`.
The bounds are enforced by the environment itself: every ``for`` loop, output and ``~`` of a
compiled template goes through a bounding filter (:class:`_BoundingCodeGenerator`).
"""

from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from lockgate.registry.errors import (
    InvalidInput,
    TemplateLimitExceeded,
    TemplateSyntaxInvalid,
    VariablesMismatch,
)

MAX_OUTPUT_CHARS = 8 * 1024 * 1024
MAX_ITERATIONS = 100_000
MAX_INT_BITS = 4096
MAX_RENDER_S = 2.0
MAX_JSON_INDENT = 16


class RenderTooSlow(Exception):
    """A render with ``within_s`` ran past it: render again in a worker thread, where the
    full :data:`MAX_RENDER_S` applies (rendering is pure, so the retry gives the same text)."""


class _Budget:
    """What one render has used so far."""

    __slots__ = ("deadline", "inline", "iterations", "written")

    def __init__(self, within_s: float | None = None) -> None:
        self.inline = within_s is not None
        self.deadline = time.monotonic() + (MAX_RENDER_S if within_s is None else within_s)
        self.iterations = 0
        self.written = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            if self.inline:
                raise RenderTooSlow
            raise _limit(f"rendering took longer than {MAX_RENDER_S:g} s")


_BUDGET: ContextVar[_Budget] = ContextVar("lockgate_template_budget")


def _budget() -> _Budget:
    budget = _BUDGET.get(None)
    if budget is None:  # rendered outside render_template: bounded all the same
        budget = _Budget()
        _BUDGET.set(budget)
    return budget


def _limit(what: str) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(
        f"template rendering stopped: {what}; templates are bounded to {MAX_ITERATIONS} loop "
        f"iterations, {MAX_OUTPUT_CHARS} characters and {MAX_RENDER_S:g} s",
        param="template",
    )


def _too_big(size: int, what: str = "a value") -> None:
    if size > MAX_OUTPUT_CHARS:
        raise _limit(f"{what} would be {size} long (at most {MAX_OUTPUT_CHARS})")


def _sized(value: Any) -> Any:
    """``value``, once it is known to be within bounds."""
    if isinstance(value, (str, bytes, list, tuple, dict)):
        _too_big(len(value))
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _limit(f"an integer of {value.bit_length()} bits (at most {MAX_INT_BITS})")
    return value


def _count(value: Any) -> int:
    if isinstance(value, int):
        return value
    return 0


# -- checks made before an amplifying operation runs ------------------------------------------

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _int_args(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and abs(value) > MAX_OUTPUT_CHARS:
            raise _limit(f"a format width of {value}")


def _check_percent(fmt: Any, args: Any) -> None:
    if not isinstance(fmt, str) or "%" not in fmt:
        return
    star = False
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for part in (width, precision):
            if part == "*":
                star = True
            elif part:
                _too_big(int(part), "a format width")
    if star:
        if isinstance(args, Mapping):
            _int_args(args.values())
        else:
            _int_args(args if isinstance(args, (tuple, list)) else [args])


def _check_braces(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None or not spec:
            continue
        if "{" in spec:  # a width taken from the arguments
            _int_args([*args, *kwargs.values()])
        for digits in _DIGITS.findall(spec):
            _too_big(int(digits), "a format width")


def _check_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str) and new:
        times = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _too_big(len(s) + times * len(new))


def _check_join(sep: Any, items: Any) -> None:
    if isinstance(sep, str) and isinstance(items, Sized):
        _too_big(len(sep) * len(items))


def _lines(s: Any) -> int:
    return s.count("\n") + 1 if isinstance(s, str) else 1


def _at_most(value: Any, limit: int, what: str) -> None:
    if isinstance(value, int) and value > limit:
        raise _limit(f"{what} of {value} (at most {limit})")


def _check_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    per_line = len(width) if isinstance(width, str) else _count(width)
    _too_big(_lines(s) * per_line + (len(s) if isinstance(s, str) else 0), "the indented text")


def _check_wordwrap(
    s: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None, *_: Any
) -> None:
    if isinstance(s, str) and isinstance(wrapstring, str):
        pieces = len(s) // max(_count(width), 1) + _lines(s)
        _too_big(len(s) + pieces * len(wrapstring), "the wrapped text")


def _check_sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, (int, float)):
        raise _limit("sum() starts from a number only")


# Filters that can make much from little: checked before they run (arguments after the value).
_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": lambda value, width=80, *_: _at_most(width, MAX_OUTPUT_CHARS, "a width"),
    "indent": _check_indent,
    "format": lambda value, *args, **kwargs: _check_percent(value, kwargs or args),
    "replace": _check_replace,
    "join": lambda value, d="", *_: _check_join(d, value),
    "batch": lambda value, n, *_: _at_most(n, MAX_ITERATIONS, "a batch size"),
    "slice": lambda value, n, *_: _at_most(n, MAX_ITERATIONS, "a slice count"),
    "tojson": lambda value, indent=None: _at_most(indent, MAX_JSON_INDENT, "a JSON indent"),
    "wordwrap": _check_wordwrap,
    "sum": _check_sum,
}

# str methods that can make much from little, as ``s.center(n)``: checked before they run.
_METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "center": lambda s, width=0, *_: _at_most(width, MAX_OUTPUT_CHARS, "a width"),
    "ljust": lambda s, width=0, *_: _at_most(width, MAX_OUTPUT_CHARS, "a width"),
    "rjust": lambda s, width=0, *_: _at_most(width, MAX_OUTPUT_CHARS, "a width"),
    "zfill": lambda s, width=0: _at_most(width, MAX_OUTPUT_CHARS, "a width"),
    "expandtabs": lambda s, tabsize=8: _too_big(s.count("\t") * _count(tabsize) + len(s)),
    "replace": _check_replace,
    "join": lambda sep, items: _check_join(sep, items),
}


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)  # keeps jinja_pass_arg
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if check is not None:
            check(*args[skip:], **kwargs)
        return _sized(func(*args, **kwargs))

    return bounded


def _bounded_range(*args: Any) -> range:
    for arg in args:
        if not isinstance(arg, int):
            raise TypeError(f"range() takes integers, not {type(arg).__name__}")
    made = range(*args)
    if len(made) > MAX_ITERATIONS:
        raise _limit(f"range() of {len(made)} numbers (at most {MAX_ITERATIONS})")
    return made


# -- the bounding filters every compiled template goes through --------------------------------


@pass_context  # never folded at compile time
def _iterate(context: Context, iterable: Any) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.iterations += 1
        if budget.iterations > MAX_ITERATIONS:
            raise _limit(f"more than {MAX_ITERATIONS} loop iterations")
        if not budget.iterations & 255:
            budget.tick()
        yield item


@pass_context
def _write(context: Context, value: Any) -> Any:
    budget = _budget()
    budget.written += len(value) if isinstance(value, str) else len(str(value))
    if budget.written > MAX_OUTPUT_CHARS:
        raise _limit(f"more than {MAX_OUTPUT_CHARS} characters written")
    budget.tick()
    return value


@pass_context
def _checked(context: Context, value: Any) -> Any:
    return _sized(value)


_ITERATE, _WRITE, _CHECKED = "lockgate_iterate", "lockgate_write", "lockgate_checked"


class _Bounding(NodeTransformer):
    """Routes every loop's iterable, every written value and every ``~`` through a bound."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment

    def _wrap(self, node: nodes.Node, name: str) -> nodes.Filter:
        assert isinstance(node, nodes.Expr)
        wrapped = nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
        wrapped.set_environment(self.environment)
        return wrapped

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._wrap(node.iter, _ITERATE)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        children: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                const = nodes.Const(child.data, lineno=child.lineno)
                const.set_environment(self.environment)
                child = const
            children.append(self._wrap(child, _WRITE))
        node.nodes = children
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._wrap(node, _CHECKED)


class _BoundingCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Bounding(self.environment).visit(node)
        super().visit_Template(node, frame)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every loop, write, value and call bounded."""

    code_generator_class = _BoundingCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters.update({_ITERATE: _iterate, _WRITE: _write, _CHECKED: _checked})
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_multiply(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%":
            _check_percent(left, right)
        return _sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            check = _METHOD_CHECKS.get(getattr(__obj, "__name__", ""))
            if check is not None:
                if __obj.__name__ == "join" and args and not isinstance(args[0], Sized):
                    args = (list(_iterate(__context, args[0])), *args[1:])
                check(owner, *args, **kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        by_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            given = args[0] if by_map and args and isinstance(args[0], Mapping) else kwargs
            _check_braces(fmt, () if by_map else args, given)
            result: str = _sized(wrapped(*args, **kwargs))
            return result

        return checked


def _check_multiply(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _limit(f"a product of more than {MAX_INT_BITS} bits")
        return
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
            _too_big(len(seq) * max(times, 0))


def _check_power(base: Any, exponent: Any) -> None:
    if not (isinstance(base, int) and isinstance(exponent, int) and exponent > 0):
        return
    if abs(base) > 1 and exponent * max(abs(base).bit_length() - 1, 1) > MAX_INT_BITS:
        raise _limit(f"a power of more than {MAX_INT_BITS} bits")


# Configuration only: the environment holds no per-request state (the budget is per render).
_ENV = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def template_variables(source: str, *, where: str | None = None) -> set[str]:
    """The variables ``source`` reads; raises :class:`TemplateSyntaxInvalid` with the line."""
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxInvalid(exc.message or str(exc), line=exc.lineno, param=where) from exc
    return set(meta.find_undeclared_variables(ast))


def variables_of(sources: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for i, src in enumerate(sources):
        found |= template_variables(src, where=f"messages[{i}].content")
    return sorted(found)


@lru_cache(maxsize=1024)
def _compiled(source: str) -> Any:
    return _ENV.from_string(source)


def check_variables(expected: Iterable[str], given: Mapping[str, Any]) -> None:
    expected_set = set(expected)
    missing = sorted(expected_set - given.keys())
    unknown = sorted(given.keys() - expected_set)
    if missing or unknown:
        raise VariablesMismatch(missing, unknown, sorted(expected_set))


def render_template(
    source: str, variables: Mapping[str, Any], *, within_s: float | None = None
) -> str:
    """Render within a fresh budget (see the module's docstring). Blocking and bounded.

    An event loop renders with a small ``within_s`` first: a template that takes longer
    raises :class:`RenderTooSlow` at its next loop step, call or write, and the caller renders
    it again in a worker thread. Most prompts render in microseconds; a thread hop per request
    would cost more than the render."""
    token = _BUDGET.set(_Budget(within_s))
    try:
        text = str(_compiled(source).render(**variables))
    except (TemplateLimitExceeded, RenderTooSlow):
        raise
    except UndefinedError as exc:  # e.g. an attribute missing on a given value
        raise InvalidInput(f"template rendering failed: {exc.message}", param="variables") from exc
    except SecurityError as exc:
        raise InvalidInput(f"template rejected by the sandbox: {exc}", param="variables") from exc
    except (RecursionError, MemoryError, OverflowError) as exc:
        raise _limit(f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # boundary: the template's own code failed (1/0, int('x'), …)
        raise InvalidInput(
            f"template rendering failed: {type(exc).__name__}: {exc}", param="template"
        ) from exc
    finally:
        _BUDGET.reset(token)
    _too_big(len(text), "the rendered text")
    return text
