"""Change records: proposals against an environment's branch, their states and the analyses
(impact reports, policy verdicts, overrides, validations) recorded against them."""

from __future__ import annotations

from steward.pipeline.changes.analyses import Analyses, Analysis, AnalysisMissing
from steward.pipeline.changes.errors import ChangeError
from steward.pipeline.changes.model import Change
from steward.pipeline.changes.records import Changes

__all__ = [
    "Analyses",
    "Analysis",
    "AnalysisMissing",
    "Change",
    "ChangeError",
    "Changes",
]
