"""The :class:`Registry`: the Python API over the system of record, composed of parts."""

from __future__ import annotations

from lockgate.registry._core import Database
from lockgate.registry.artifacts import ArtifactStore
from lockgate.registry.calls import Calls
from lockgate.registry.datasets import Datasets
from lockgate.registry.events import Events
from lockgate.registry.files import Files
from lockgate.registry.gates import Gates
from lockgate.registry.jobs import Jobs
from lockgate.registry.keys import Keys
from lockgate.registry.labels import Labels
from lockgate.registry.models import Models
from lockgate.registry.predictions import Predictions
from lockgate.registry.prompts import Prompts
from lockgate.registry.runs import Runs
from lockgate.registry.settings import RegistrySettings


class Registry:
    """lockgate's system of record, one part per concept over one :class:`Database`.

    =========== =============================================================
    part        what it holds
    =========== =============================================================
    prompts     prompt templates: ``push``, ``get``/``resolve``/``render`` by reference
    models      LLM routes, LoRA adapters, scikit-learn models: ``register``, ``get``
    labels      movable pointers to versions: ``set`` (compare-and-set, gated), ``history``
    datasets    versioned data files: ``add``, ``get``/``fetch`` by reference
    runs        eval and training runs: metrics, lineage, artifacts, tags
    artifacts   the content-addressed store (:class:`ArtifactStore`)
    keys        virtual API keys: scopes, limits, spend
    jobs        background jobs: claim, heartbeat, events, cancel
    files       uploaded files (the OpenAI files API)
    calls       call records from the gateway
    predictions sampled input rows and predictions of served scikit-learn models
    gates       gate policies: which suites must pass before a label moves
    events      the outbox of registry events (label moved, gate refused, …) for webhooks
    =========== =============================================================

    Every part names things one way: ``NAME`` (the latest version), ``NAME@LABEL`` or
    ``NAME@VERSION`` (a string or a :class:`~lockgate.registry.records.Ref`).

    ``Registry()`` reads ``lockgate.yaml`` and ``LOCKGATE_*`` like the CLI does;
    ``Registry(RegistrySettings(database_url=...))`` opens a given database (and, for the
    embedded SQLite default, migrates it). It is safe to share between threads.
    """

    def __init__(
        self,
        settings: RegistrySettings | None = None,
        *,
        actor: str | None = None,
        store: ArtifactStore | None = None,
        migrate: bool | None = None,
    ) -> None:
        self.db = Database(settings, actor=actor, store=store, migrate=migrate)
        self.settings: RegistrySettings = self.db.settings
        self.artifacts: ArtifactStore = self.db.artifacts
        self.labels = Labels(self.db)
        self.prompts = Prompts(self.db, self.labels)
        self.models = Models(self.db, self.labels)
        self.datasets = Datasets(self.db)
        self.runs = Runs(self.db)
        self.keys = Keys(self.db)
        self.jobs = Jobs(self.db)
        self.files = Files(self.db)
        self.calls = Calls(self.db)
        self.predictions = Predictions(self.db)
        self.gates = Gates(self.db)
        self.events = Events(self.db)

    @property
    def actor(self) -> str:
        """The name recorded on what this registry writes."""
        return self.db.actor

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
