"""The pull agent: upload facts, fetch the catalog, enforce it, report; on a schedule.

Standard library only (``tests/test_layering.py`` checks it), like the engine it drives: it
runs on nodes that have nothing but ``python3``. It talks HTTPS to the Steward server with
``http.client`` and ``ssl``, trusting the Steward CA it is given. When the server cannot be
reached it enforces its last cached catalog and queues its reports in a spool directory
(fsync'd, delivered oldest first, deleted only after the server acknowledged them).
"""
