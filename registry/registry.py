"""The :class:`Registry`: the Python API over the system of record."""

from __future__ import annotations

from registry.calls import CallsMixin
from registry.datasets import DatasetsMixin
from registry.gates import GatesMixin
from registry.jobs import JobsMixin
from registry.keys import KeysMixin
from registry.models import ModelsMixin
from registry.prompts import PromptsMixin
from registry.runs import RunsMixin


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
