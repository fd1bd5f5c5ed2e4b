"""The server's Alembic history (version table ``steward_server_version``)."""
