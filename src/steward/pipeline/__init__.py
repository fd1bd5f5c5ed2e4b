"""The change pipeline: proposals, impact analysis, policy, RBAC, approvals, deploys, audit.

Nobody changes a node except through a change that was predicted, checked, approved and
recorded. This layer sits above the server and below the interfaces (REST, CLI, MCP).
"""
