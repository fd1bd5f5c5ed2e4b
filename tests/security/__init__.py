"""Hostile-agent, -node and -user scenarios against a real server, on both backends."""
