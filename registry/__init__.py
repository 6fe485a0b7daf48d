"""lockgate's system of record: prompts, models, labels, datasets, runs and artifacts.

Imports nothing from the other lockgate packages. Heavy modules load on first use, so
``import registry`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockgate.registry._lazy import lazy_exports
from lockgate.registry.errors import (
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
    from lockgate.registry.artifacts import ArtifactStore, FsspecArtifactStore
    from lockgate.registry.records import (
        DatasetVersionInfo,
        LabelMove,
        LineageEdge,
        ModelVersionInfo,
        PromptVersionInfo,
        Ref,
        RenderedPrompt,
        RunInfo,
    )
    from lockgate.registry.registry import Registry
    from lockgate.registry.settings import RegistrySettings

_LAZY = {
    "Registry": "lockgate.registry.registry",
    "RegistrySettings": "lockgate.registry.settings",
    "ArtifactStore": "lockgate.registry.artifacts",
    "FsspecArtifactStore": "lockgate.registry.artifacts",
    "DatasetVersionInfo": "lockgate.registry.records",
    "LabelMove": "lockgate.registry.records",
    "LineageEdge": "lockgate.registry.records",
    "ModelVersionInfo": "lockgate.registry.records",
    "PromptVersionInfo": "lockgate.registry.records",
    "Ref": "lockgate.registry.records",
    "RenderedPrompt": "lockgate.registry.records",
    "RunInfo": "lockgate.registry.records",
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
