"""The server's desired-state git repository: environments are branches.

Sits below the server (which compiles each environment from its branch) and above the
compiler and store; the change pipeline builds proposals, merges and reverts on it.
"""
