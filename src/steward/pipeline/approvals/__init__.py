"""Approval rules per environment and the approvals recorded against changes, bound to the
head and digest the approver saw."""

from __future__ import annotations

from steward.pipeline.approvals.records import Approvals, StaleApprovalError, check_reviewed
from steward.pipeline.approvals.rules import ApprovalError, load_approval_rules

__all__ = [
    "ApprovalError",
    "Approvals",
    "StaleApprovalError",
    "check_reviewed",
    "load_approval_rules",
]
