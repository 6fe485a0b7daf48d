"""The :class:`Registry`: the Python API over the system of record."""

from __future__ import annotations

from lockgate.registry.calls import CallsMixin
from lockgate.registry.datasets import DatasetsMixin
from lockgate.registry.gates import GatesMixin
from lockgate.registry.jobs import JobsMixin
from lockgate.registry.keys import KeysMixin
from lockgate.registry.models import ModelsMixin
from lockgate.registry.prompts import PromptsMixin
from lockgate.registry.runs import RunsMixin


class Registry(
    PromptsMixin,
    ModelsMixin,
    DatasetsMixin,
    RunsMixin,
    CallsMixin,
    KeysMixin,
    JobsMixin,
    GatesMixin,
):
    """Prompts, models, labels, datasets, runs, artifacts, call records, API keys,
    jobs and uploaded files.

    ``Registry(RegistrySettings(database_url=...))`` opens (and, for the embedded SQLite
    default, migrates) the database. It is safe to share between threads.
    """
