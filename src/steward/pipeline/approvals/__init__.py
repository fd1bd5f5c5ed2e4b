"""Approval rules per environment and the approvals recorded against changes, bound to the
head and digest the approver saw."""
