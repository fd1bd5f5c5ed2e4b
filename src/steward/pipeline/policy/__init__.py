"""Policy as code: Rego policies over a change's impact, their configuration, the sandbox
they run in and ``steward policy test``."""
