"""lockgate's system of record: prompts, models, labels, datasets, runs and artifacts.

Imports nothing from the other lockgate packages. Heavy modules load on first use, so
``import registry`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry._lazy import lazy_exports
from registry.errors import (
    ArtifactCorrupted,
    Conflict,
    DatabaseError,
    DatasetFormatError,
    GateRefused,
    InvalidInput,
    LockgateError,
    MissingExtra,
    NotFound,
    RegistryError,
    TemplateSyntaxInvalid,
    VariablesMismatch,
)

if TYPE_CHECKING:
    from registry.artifacts import ArtifactStore, FsspecArtifactStore
    from registry.records import (
        DatasetVersionInfo,
        LabelMove,
        LineageEdge,
        ModelVersionInfo,
        PromptVersionInfo,
        Ref,
        RenderedPrompt,
        RunInfo,
    )
    from registry.registry import Registry
    from registry.settings import RegistrySettings

_LAZY = {
    "Registry": "registry.registry",
    "RegistrySettings": "registry.settings",
    "ArtifactStore": "registry.artifacts",
    "FsspecArtifactStore": "registry.artifacts",
    "DatasetVersionInfo": "registry.records",
    "LabelMove": "registry.records",
    "LineageEdge": "registry.records",
    "ModelVersionInfo": "registry.records",
    "PromptVersionInfo": "registry.records",
    "Ref": "registry.records",
    "RenderedPrompt": "registry.records",
    "RunInfo": "registry.records",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ArtifactCorrupted",
    "ArtifactStore",
    "Conflict",
    "DatabaseError",
    "DatasetFormatError",
    "DatasetVersionInfo",
    "FsspecArtifactStore",
    "GateRefused",
    "InvalidInput",
    "LabelMove",
    "LineageEdge",
    "LockgateError",
    "MissingExtra",
    "ModelVersionInfo",
    "NotFound",
    "PromptVersionInfo",
    "Ref",
    "Registry",
    "RegistryError",
    "RegistrySettings",
    "RenderedPrompt",
    "RunInfo",
    "TemplateSyntaxInvalid",
    "VariablesMismatch",
]
