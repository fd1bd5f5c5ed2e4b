"""Revisions of the server's control-plane schema, oldest first."""
