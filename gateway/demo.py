"""``lockgate demo``: the whole loop that exists, on the embedded defaults, offline.

Each capability adds a step; every step prints the CLI command a user would type for it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.console import console, table, when

SUPPORT_V1 = "You are a support agent. Answer the customer's question: {{ question }}"
SUPPORT_V2 = [
    {
        "role": "system",
        "content": "You are a support agent for {{ product }}. Answer in one short sentence.",
    },
    {"role": "user", "content": "{{ question }}"},
]


@dataclass
class Demo:
    root: Path
    out: Any  # a rich console
    registry: Any  # registry.Registry

    def say(self, title: str) -> None:
        self.out.rule(f"[bold]{title}")

    def cmd(self, line: str) -> None:
        self.out.print(f"[dim]$ lockgate {line}[/dim]", markup=True, highlight=False)


def registry_step(demo: Demo) -> None:
    reg = demo.registry
    demo.say("1. Registry: versioned prompts with labels")
    demo.cmd("prompt push support --file support.txt -m 'first prompt'")
    v1, _ = reg.push_prompt("support", SUPPORT_V1, {"temperature": 0.2}, message="first prompt")
    demo.out.print(f"pushed support@{v1.version}; variables: {', '.join(v1.variables)}")
    demo.cmd("prompt push support --file support.yaml -m 'chat form, names the product'")
    v2, _ = reg.push_prompt(
        "support",
        SUPPORT_V2,
        {"temperature": 0.0, "max_tokens": 64},
        message="chat form, names the product",
    )
    demo.out.print(f"pushed support@{v2.version}; variables: {', '.join(v2.variables)}")
    again, created = reg.push_prompt("support", SUPPORT_V1, {"temperature": 0.2})
    demo.out.print(
        f"pushing v1's content again returns support@{again.version} (created={created})"
    )

    demo.cmd("prompt label support 1 production --reason 'first release'")
    reg.set_label("prompt", "support", "production", 1, reason="first release")
    demo.cmd("prompt render support@production --var question='Where is my order?'")
    rendered = reg.render_prompt(
        reg.get_prompt("support@production"), {"question": "Where is my order?"}
    )
    demo.out.print(rendered.text, markup=False)

    demo.cmd("prompt diff support production latest")
    demo.out.print(reg.diff_prompts("support", "production", "latest"), markup=False)

    demo.cmd("prompt label support 2 production --expect 1 --reason 'chat form reviewed'")
    reg.set_label(
        "prompt", "support", "production", 2, expect_version=1, reason="chat form reviewed"
    )
    demo.cmd("prompt label support 1 production --expect 1   # a stale writer")
    from registry.errors import Conflict

    try:
        reg.set_label("prompt", "support", "production", 1, expect_version=1)
    except Conflict as exc:
        demo.out.print(f"[red]error:[/red] {exc.message}", highlight=False)

    demo.cmd("prompt history support")
    moves = reg.label_history("prompt", "support")
    demo.out.print(
        table(
            None,
            ["when", "label", "from", "to", "actor", "reason"],
            [
                [
                    when(m.created_at),
                    m.label,
                    m.from_version or "-",
                    m.to_version,
                    m.actor,
                    m.reason,
                ]
                for m in moves
            ],
        )
    )


STEPS: list[Callable[[Demo], None]] = [registry_step]


def run_demo(root: Path) -> None:
    from registry import Registry, RegistrySettings

    if root.exists():
        shutil.rmtree(root)
    settings = RegistrySettings(data_dir=root)
    registry = Registry(settings, actor="demo")
    out = console()
    out.print(f"lockgate demo — embedded registry at {settings.resolved_database_url()}")
    try:
        demo = Demo(root=root, out=out, registry=registry)
        for step in STEPS:
            step(demo)
    finally:
        registry.close()
    out.rule()
    out.print(f"Explore it: LOCKGATE_DATA_DIR={root} lockgate prompt show support@production")
