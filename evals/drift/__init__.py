"""Drift statistics and reference profiles: is the current data distributed like the reference?

Typical use::

    from lockgate.evals.drift import build_profile, check_drift, Profile

    profile = build_profile(reference_df)          # once; store profile.to_bytes()
    report = check_drift(profile, current_df)      # per check: reads only the current data
    report.drifted, report.share_drifted
    report.column("age").test, report.column("age").score
    report.to_dict()                               # JSON-ready

    profile = Profile.from_bytes(blob)             # a stored reference, later

Verdicts equal Evidently 0.7's ``DataDriftPreset`` defaults (test per column: ``check.py``;
formulas: ``stattests.py``). A reference larger than memory is profiled in batches with
:class:`ProfileBuilder`; partition profiles merge with :meth:`Profile.merge`.

Text columns are checked by Evidently's TF-IDF domain classifier (``text.py``), embedding
columns (equal-length vectors per row) by a domain classifier or MMD (``embeddings.py``);
both keep a bounded seeded sample in the profile. ``embed.embed_column`` computes embeddings
through an OpenAI-compatible ``/v1/embeddings`` (the gateway).
"""

from __future__ import annotations

from lockgate.evals.drift.check import DriftOptions, check_drift, default_test_name
from lockgate.evals.drift.embeddings import EmbeddingProfile
from lockgate.evals.drift.errors import (
    DriftError,
    DriftInputInvalid,
    ProfileInvalid,
    ProfileTooCoarse,
    UnknownDriftTest,
)
from lockgate.evals.drift.profile import (
    DEFAULT_EXACT_LIMIT,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    Profile,
    ProfileBuilder,
    build_profile,
    profile_column,
)
from lockgate.evals.drift.results import ColumnDrift, DriftReport
from lockgate.evals.drift.sketch import QuantileSketch
from lockgate.evals.drift.stattests import (
    DriftTest,
    Score,
    get_test,
    mmd_variant,
    register_test,
    test_names,
)
from lockgate.evals.drift.text import TextProfile

__all__ = [
    "DEFAULT_EXACT_LIMIT",
    "CategoricalProfile",
    "ColumnDrift",
    "ColumnProfile",
    "DriftError",
    "DriftInputInvalid",
    "DriftOptions",
    "DriftReport",
    "DriftTest",
    "EmbeddingProfile",
    "NumericProfile",
    "Profile",
    "ProfileBuilder",
    "ProfileInvalid",
    "ProfileTooCoarse",
    "QuantileSketch",
    "Score",
    "TextProfile",
    "UnknownDriftTest",
    "build_profile",
    "check_drift",
    "default_test_name",
    "get_test",
    "mmd_variant",
    "profile_column",
    "register_test",
    "test_names",
]
