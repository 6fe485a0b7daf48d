"""The ``ui`` section of ``lockgate.yaml``: how the UI's sessions are signed and how long
they last (docs/ui.md)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class UISettings(BaseModel):
    """The UI at ``/ui`` (the ``ui`` section)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Serve the UI at /ui.")
    session_secret_env: str | None = Field(
        default=None,
        description="Environment variable holding the secret that signs UI sessions (32+ "
        "characters); unset: a random secret per process, so sessions end when the server "
        "restarts and are not shared between workers or replicas.",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Resolved at start-up from session_secret_env; avoid setting it.",
    )
    session_ttl_s: float = Field(
        default=8 * 3600.0,
        ge=60,
        le=7 * 86400,
        description="How long a UI session lasts after sign-in (then sign in again).",
    )

    def with_secrets(self, environ: Mapping[str, str]) -> UISettings:
        """A copy with ``session_secret`` resolved from ``session_secret_env``."""
        var = self.session_secret_env
        if self.session_secret is None and var and environ.get(var):
            return self.model_copy(update={"session_secret": SecretStr(environ[var])})
        return self
