"""Who a caller is and what it may do: principals, tokens, roles and permissions (RBAC),
authorisation, and the tamper-evident audit log of what each one did.

Below the server and the pipeline, so both use the same rules: neither swaps its own in.
"""
