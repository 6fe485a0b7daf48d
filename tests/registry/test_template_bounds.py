"""Prompt templates render bounded: every way a template could make much from little, or
loop for ever, is a ``template_limit`` error found quickly, and ordinary templates render
as before."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from lockgate.registry.errors import InvalidInput, TemplateLimitExceeded
from lockgate.registry.templates import RenderTooSlow, render_template

EXHAUSTING = {
    "nested loops": "{% for i in range(7000) %}{% for j in range(7000) %}{% endfor %}{% endfor %}",
    "loops over a variable": "{% for a in xs %}{% for b in xs %}{% for c in xs %}{% endfor %}"
    "{% endfor %}{% endfor %}",
    "string times a number": "{{ 'a' * 10**8 }}",
    "number times a string": "{{ 10**8 * 'a' }}",
    "list times a number": "{{ ([1] * 10**8)|length }}",
    "a power": "{{ 10 ** (10 ** 8) }}",
    "a huge range": "{% for i in range(10**9) %}{% endfor %}",
    "a listed range": "{{ range(10**9)|list|length }}",
    "center": "{{ 'x'|center(10**9) }}",
    "a method": "{{ 'x'.ljust(10**9) }}",
    "zfill": "{{ 'x'.zfill(10**9) }}",
    "indent": "{{ q|indent(10**8) }}",
    "a percent width": "{{ '%999999999d' % 1 }}",
    "a star width": "{{ '%*d' % (10**9, 1) }}",
    "the format filter": "{{ '%999999999s'|format('x') }}",
    "a brace width": "{{ '{:>999999999}'.format(1) }}",
    "a nested brace width": "{{ '{:{}}'.format(1, 10**9) }}",
    "replace everywhere": "{{ q|replace('', 'x' * 100000) }}",
    "a replacing method": "{{ q.replace('', 'x' * 100000) }}",
    "join": "{{ range(100000)|join('x' * 100000) }}",
    "a joining method": "{{ ('x' * 100000).join(range(100000)|map('string')) }}",
    "doubling with set": "{% set s = 'x' * 1000 %}" + "{% set s = s ~ s %}" * 30 + "{{ s|length }}",
    "doubling with +": "{% set s = 'x' * 1000 %}" + "{% set s = s + s %}" * 30 + "{{ s|length }}",
    "doubling in blocks": "{% set s = 'x' * 1000 %}" + "{% set s %}{{ s }}{{ s }}{% endset %}" * 30,
    "doubling a namespace": "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "written output": "{% for i in range(100000) %}" + "x" * 1000 + "{% endfor %}",
    "static text in a block": "{% set s %}{% for i in range(100000) %}"
    + "x" * 1000
    + "{% endfor %}{% endset %}",
    "batch fill": "{{ [1]|batch(10**9, 0)|list|length }}",
    "slice count": "{{ [1]|slice(10**9)|list|length }}",
    "sum of lists": "{{ ([[1] * 1000] * 100000)|sum(start=[])|length }}",
    "recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "a recursive loop": "{% for a in xs recursive %}{{ loop(xs) }}{% endfor %}",
    "tojson indent": "{{ xs|tojson(indent=10**9) }}",
    "wordwrap": "{{ q|wordwrap(1, wrapstring='x' * 100000) }}",
}
VARIABLES: dict[str, Any] = {"xs": list(range(1000)), "q": "word " * 20_000}


@pytest.mark.parametrize("source", list(EXHAUSTING.values()), ids=list(EXHAUSTING))
def test_what_would_exhaust_the_process_is_a_template_limit(source: str) -> None:
    names = [n for n in ("xs", "q") if n in source]
    started = time.perf_counter()
    with pytest.raises(TemplateLimitExceeded) as info:
        render_template(source, {n: VARIABLES[n] for n in names})
    assert time.perf_counter() - started < 3
    assert info.value.code == "template_limit" and info.value.status_code == 400
    assert "bounded" in info.value.message


ORDINARY = {
    "Answer: {{ q }}": ({"q": "hi"}, "Answer: hi"),
    "{% for x in xs %}{{ loop.index }}. {{ x }}\n{% endfor %}": (
        {"xs": ["a", "b"]}, "1. a\n2. b\n",
    ),
    "{{ xs|join(', ') }} ({{ xs|length }})": ({"xs": ["a", "b"]}, "a, b (2)"),
    "{{ '%05.1f'|format(3.14159) }} {{ '{:>6}'.format('x') }} {{ 2 ** 10 }}": (
        {}, "003.1      x 1024",
    ),
    "{{ ('ab' * 3)|upper }}{{ 'x'|center(5) }}|{{ d|tojson }}": (
        {"d": {"k": [1, 2]}}, 'ABABAB  x  |{"k": [1, 2]}',
    ),
    "{% set ns = namespace(n=0) %}{% for i in range(10) %}{% set ns.n = ns.n + i %}"
    "{% endfor %}{{ ns.n }} {{ range(3)|sum }}": ({}, "45 3"),
    "{{ 10**23 }} {{ q.replace('i', 'o') }} {{ q ~ q }}": ({"q": "hi"}, f"{10**23} ho hihi"),
}  # fmt: skip


@pytest.mark.parametrize("source", list(ORDINARY))
def test_ordinary_templates_render_as_before(source: str) -> None:
    variables, expected = ORDINARY[source]
    assert render_template(source, variables) == expected


def test_the_templates_own_failures_are_bad_input() -> None:
    for source in ("{{ 1 / 0 }}", "{{ [1][5] }}", "{{ {'a': 1}|dictsort(by='x') }}"):
        with pytest.raises(InvalidInput):
            render_template(source, {})


def test_a_budget_is_per_render_and_per_thread() -> None:
    loops = "{% for i in range(60000) %}{% endfor %}ok"
    assert render_template(loops, {}) == "ok"  # twice: each render has its own budget
    assert render_template(loops, {}) == "ok"
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(render_template(loops, {})))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["ok"] * 4


def test_a_quick_attempt_hands_a_slow_template_back_and_a_fast_one_renders() -> None:
    """The gateway renders on its event loop for at most ``within_s``, then in a thread."""
    slow = "{% for i in range(90000) %}{{ i % 7 }}{% endfor %}"
    with pytest.raises(RenderTooSlow):
        render_template(slow, {}, within_s=0.0001)
    full = render_template(slow, {})  # the retry, with the whole budget
    assert len(full) == 90000 and full.startswith("0123456012")
    assert render_template("Hi {{ name }}", {"name": "Ada"}, within_s=0.05) == "Hi Ada"
