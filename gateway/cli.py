"""The ``lockgate`` command: the root of the CLI, mounting each package's sub-commands.

Exit codes: 0 ok, 1 a gate or check failed, 2 bad input or an unreachable service.

Start-up stays short (``lockgate --help`` in about a tenth of a second of Python here; see
docs/benchmarks.md): a sub-command group (``prompt``, ``eval``, …) is imported only when the
command line names it (:data:`SUBCOMMANDS`, :class:`LockgateGroup`), each command imports
what it needs when it runs, and help is plain text (rendering it with rich took longer than
all the rest).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from lockgate.registry.errors import LockgateError

if TYPE_CHECKING:
    from lockgate.evals.settings import EvalsSettings
    from lockgate.finetune.settings import WorkerSettings
    from lockgate.gateway.config import LockgateSettings
    from lockgate.registry.registry import Registry
    from lockgate.registry.settings import RegistrySettings

# Each sub-command group: the module and Typer app that define it, and its one-line help for
# `lockgate --help` (which imports none of them; a test checks the lines against the apps').
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "prompt": ("lockgate.registry.cli", "prompt_app", "Versioned prompt templates with labels."),
    "model": (
        "lockgate.registry.cli",
        "model_app",
        "Registered models: upstream LLMs, LoRA adapters, HF and scikit-learn.",
    ),
    "dataset": ("lockgate.registry.cli", "dataset_app", "Datasets versioned by content hash."),
    "run": ("lockgate.registry.cli", "run_app", "Runs of evals, fine-tunes and drift checks."),
    "db": ("lockgate.registry.cli", "db_app", "The registry database."),
    "keys": (
        "lockgate.gateway.keys_cli",
        "keys_app",
        "Virtual API keys: scopes, model lists, limits, budgets.",
    ),
    "calls": (
        "lockgate.gateway.calls_cli",
        "calls_app",
        "Call records: one per gateway call, with its route, prompt, key, status and trace.",
    ),
    "eval": (
        "lockgate.evals.cli",
        "eval_app",
        "Dataset-based evaluation runs with statistically sound gates.",
    ),
    "drift": (
        "lockgate.evals.drift.cli",
        "drift_app",
        "Drift checks of datasets, files, model inputs and LLM traffic.",
    ),
    "finetune": (
        "lockgate.finetune.cli",
        "finetune_app",
        "LoRA fine-tuning and scikit-learn retraining jobs: submit, watch, cancel, work.",
    ),
    "monitor": (
        "lockgate.gateway.monitor.cli",
        "monitor_app",
        "Monitoring policies: watch drift, evals, latency, errors and new data; act.",
    ),
}


@functools.cache
def subcommand_app(name: str) -> typer.Typer:
    """The Typer app of sub-command group ``name``, imported on first use."""
    module, attribute, _ = SUBCOMMANDS[name]
    sub_app: typer.Typer = getattr(importlib.import_module(module), attribute)
    if name == "model":  # `model init-tiny` is built by finetune, registered here
        from lockgate.finetune.cli import init_tiny

        sub_app.command("init-tiny")(init_tiny)
    return sub_app


def _plain_help(command: Any) -> Any:
    """Help as plain text (no rich), for a command and everything under it."""
    command.rich_markup_mode = None
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)
    return command


class _Unloaded(TyperCommand):
    """Stands for a sub-command group in ``lockgate --help`` until the group is needed."""


class CliState:
    """Built by the root callback; settings are read once, the registry opened on first use."""

    def __init__(self, config_path: Path | None) -> None:
        self._config_path = config_path
        self._settings: LockgateSettings | None = None
        self._registry: Registry | None = None

    @property
    def settings(self) -> LockgateSettings:
        if self._settings is None:
            from lockgate.gateway.config import load_settings

            self._settings = load_settings(self._config_path)
        return self._settings

    @property
    def registry_settings(self) -> RegistrySettings:
        return self.settings.registry

    @property
    def finetune_settings(self) -> WorkerSettings:
        return self.settings.finetune

    @property
    def evals_settings(self) -> EvalsSettings:
        return self.settings.evals

    def registry(self) -> Registry:
        if self._registry is None:
            from lockgate.registry.registry import Registry

            self._registry = Registry(self.settings.registry)
        return self._registry

    def check_model_spec(self, flavor: str, spec: dict[str, Any]) -> None:
        """Before ``model register``: an upstream model may name only hosts its provider's
        key may go to (gateway.providers.<provider>.allowed_api_bases)."""
        if flavor == "upstream":
            from lockgate.gateway.routing import check_upstream_spec

            check_upstream_spec(spec, self.settings.gateway)

    def eval_transport_factory(self) -> Any:
        """The in-process gateway, for eval suites that name no ``base_url``."""
        from lockgate.gateway.inprocess import InProcessGateway

        return InProcessGateway(self.settings)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()


class LockgateGroup(TyperGroup):
    """The root group: turns a :class:`LockgateError` into one line on stderr and its exit
    code, and imports a sub-command group (:data:`SUBCOMMANDS`) only when it is used."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, (_, _, short_help) in SUBCOMMANDS.items():
            self.commands.setdefault(name, _Unloaded(name=name, help=short_help))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Unloaded):
            command = typer.main.get_group(subcommand_app(cmd_name))
            command.name = cmd_name
            self.commands[cmd_name] = _plain_help(command)
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """As click's, from the one-line helps, without importing the groups."""
        shown = [(name, cmd) for name, cmd in self.commands.items() if not cmd.hidden]
        if shown:
            limit = formatter.width - 6 - max(len(name) for name, _ in shown)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in shown])

    def invoke(self, ctx: Any) -> Any:  # click.Context (typer vendors click)
        try:
            return super().invoke(ctx)
        except LockgateError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=LockgateGroup,
    name="lockgate",
    help="lockgate: an LLMOps gateway with a prompt and model registry, evals and gates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="lockgate.yaml (default: $LOCKGATE_CONFIG, else ./lockgate.yaml if present).",
            envvar=None,
        ),
    ] = None,
) -> None:
    state = CliState(config)
    ctx.obj = state
    ctx.call_on_close(state.close)


@app.command("demo")
def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo's embedded registry goes (wiped first).")
    ] = Path(".demo"),
    serve: Annotated[
        bool,
        typer.Option("--serve", help="Then serve the gateway and the UI on --port until Ctrl-C."),
    ] = False,
    port: Annotated[int, typer.Option(help="The port --serve listens on (loopback).")] = 4000,
) -> None:
    """Run lockgate's whole loop on the embedded defaults: no API keys, no network."""
    from lockgate.gateway.demo import run_demo

    run_demo(data_dir.resolve(), serve=serve, port=port)


@app.command("serve")
def serve(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="lockgate.yaml (as the root option).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Default: server.host (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Default: server.port (4000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Default: server.workers (1).")] = None,
) -> None:
    """Serve the OpenAI-compatible gateway (uvicorn).

    Reads --config, $LOCKGATE_CONFIG or ./lockgate.yaml; at start-up says which, and the routes.
    """
    from lockgate.gateway.serve import serve as run_server

    if config is None and ctx.parent is not None:
        config = ctx.parent.params.get("config")
    settings = ctx.obj.settings if config is None else CliState(config).settings
    run_server(settings, config_path=config, host=host, port=port, workers=workers)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
