"""The ``lockgate`` command: the root of the CLI, mounting each package's sub-commands.

Exit codes: 0 ok, 1 a gate or check failed, 2 bad input or an unreachable service.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from lockgate.evals.cli import eval_app
from lockgate.finetune.cli import finetune_app, init_tiny
from lockgate.gateway.keys_cli import keys_app
from lockgate.registry.cli import dataset_app, db_app, model_app, prompt_app, run_app
from lockgate.registry.errors import LockgateError

if TYPE_CHECKING:
    from lockgate.gateway.config import LockgateSettings
    from lockgate.registry.registry import Registry
    from lockgate.registry.settings import RegistrySettings


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
    """Turns a :class:`LockgateError` into one line on stderr and its exit code."""

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


app.add_typer(prompt_app, name="prompt")
model_app.command("init-tiny")(init_tiny)  # built by finetune, registered here
app.add_typer(model_app, name="model")
app.add_typer(dataset_app, name="dataset")
app.add_typer(run_app, name="run")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
from lockgate.gateway.calls_cli import calls_app  # noqa: E402

app.add_typer(calls_app, name="calls")
app.add_typer(eval_app, name="eval")
app.add_typer(finetune_app, name="finetune")


@app.command("demo")
def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo's embedded registry goes (wiped first).")
    ] = Path(".demo"),
) -> None:
    """Run lockgate's whole loop on the embedded defaults: no API keys, no network."""
    from lockgate.gateway.demo import run_demo

    run_demo(data_dir.resolve())


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
