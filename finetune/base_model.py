"""The base model: a local directory, a registry ``hf`` model, or a Hugging Face hub id.

``registry:NAME@LABEL`` (or ``@VERSION``) must name an existing ``hf`` model version. A
local directory needs a ``config.json``. Anything else that looks like ``org/name`` is a hub
id, accepted only when the hub answers from this machine (checked with a short timeout).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.finetune.errors import BaseModelNotFound
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.records import Ref

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry

REGISTRY_PREFIX = "registry:"
HUB_URL = "https://huggingface.co"


@dataclass(frozen=True)
class BaseModel:
    kind: str  # "path" | "registry" | "hub"
    ref: str  # the directory, NAME@VERSION (pinned), or the hub id
    model_type: str | None  # config.json's model_type when it could be read
    max_positions: int | None

    @property
    def lineage_ref(self) -> str:
        """How lineage names it: ``NAME@VERSION``, ``path:/dir`` or ``hub:org/name``."""
        return self.ref if self.kind == "registry" else f"{self.kind}:{self.ref}"


def hub_reachable(repo_id: str, timeout: float = 3.0) -> tuple[bool, str]:
    """(found, why not) for a hub repository, without downloading anything."""
    import httpx

    try:
        response = httpx.head(f"{HUB_URL}/api/models/{repo_id}", timeout=timeout)
    except httpx.HTTPError as exc:
        return False, f"the Hugging Face Hub is not reachable from this machine ({exc})"
    if response.status_code == 200:
        return True, ""
    return False, f"the Hugging Face Hub answered {response.status_code} for {repo_id!r}"


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _from_config(kind: str, ref: str, config: dict[str, Any]) -> BaseModel:
    positions = config.get("max_position_embeddings") or config.get("n_positions")
    return BaseModel(
        kind, ref, config.get("model_type"), positions if isinstance(positions, int) else None
    )


def resolve_base_model(
    text: str,
    registry: Registry | None,
    *,
    probe_hub: Callable[[str], tuple[bool, str]] = hub_reachable,
) -> BaseModel:
    """Check that the base model exists, and pin a registry reference to its version."""
    if text.startswith(REGISTRY_PREFIX):
        return _registry_model(text[len(REGISTRY_PREFIX) :], registry)
    path = Path(text).expanduser()
    if path.exists():
        if not (path.is_dir() and (path / "config.json").is_file()):
            raise BaseModelNotFound(
                f"base model {text!r} is not a model directory (no config.json)",
                param="base_model",
            )
        return _from_config("path", str(path.resolve()), _read_config(path))
    looks_like_path = text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text
    if looks_like_path or "/" not in text:
        raise BaseModelNotFound(
            f"base model {text!r} not found: no such directory, and not a registry reference "
            f"({REGISTRY_PREFIX}NAME@LABEL) or a hub id (org/name)",
            param="base_model",
        )
    found, why = probe_hub(text)
    if not found:
        raise BaseModelNotFound(
            f"base model {text!r} is not a local directory and cannot be used as a hub id: "
            f"{why}. Download it where the hub is reachable and pass the directory, or "
            "register it: lockgate model register NAME --flavor hf --path DIR",
            param="base_model",
        )
    return BaseModel("hub", text, None, None)


def _registry_model(text: str, registry: Registry | None) -> BaseModel:
    if registry is None:
        raise BaseModelNotFound(f"{REGISTRY_PREFIX}{text} needs the registry", param="base_model")
    try:
        version = registry.models.get(Ref.parse(text))
    except (NotFound, InvalidInput) as exc:
        raise BaseModelNotFound(
            f"base model {REGISTRY_PREFIX}{text} not found in the registry: {exc.message}",
            param="base_model",
        ) from exc
    if version.flavor != "hf":
        raise BaseModelNotFound(
            f"base model {REGISTRY_PREFIX}{text} is a {version.flavor!r} model; "
            "fine-tuning starts from an 'hf' model",
            param="base_model",
        )
    config = version.spec.get("config") if isinstance(version.spec.get("config"), dict) else {}
    return _from_config("registry", f"{version.name}@{version.version}", config or {})


def materialize_base_model(base: BaseModel, registry: Registry, dest: Path) -> str:
    """A path (or hub id) that ``from_pretrained`` can load on this machine."""
    if base.kind != "registry":
        return base.ref
    if not (dest / "config.json").is_file():
        registry.models.fetch(base.ref, dest)
    return str(dest)
