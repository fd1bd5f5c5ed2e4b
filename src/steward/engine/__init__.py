"""The node-side engine: providers, the transaction that walks the graph, reports, drift.

Standard library only (checked by ``tests/test_layering.py``), because the same code runs in
the pull agent and is shipped over SSH to hosts that have nothing but python3.
"""
