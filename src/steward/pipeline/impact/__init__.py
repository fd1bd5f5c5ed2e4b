"""Impact analysis: which nodes a change affects and what it changes on each (before ->
after), predicted by compiling both sides, and asked of the machines themselves (live)."""

from __future__ import annotations

from steward.pipeline.impact.analysis import analyse_impact
from steward.pipeline.impact.fleet import StoreFleet
from steward.pipeline.impact.live import LivePredictor, live_counts
from steward.pipeline.impact.model import ChangeInfo, Timings
from steward.pipeline.impact.render import render_text
from steward.pipeline.impact.report import ImpactReport

__all__ = [
    "ChangeInfo",
    "ImpactReport",
    "LivePredictor",
    "StoreFleet",
    "Timings",
    "analyse_impact",
    "live_counts",
    "render_text",
]
