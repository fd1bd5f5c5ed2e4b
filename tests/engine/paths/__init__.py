"""Table-driven tests of the path-based providers against real temporary directories."""
