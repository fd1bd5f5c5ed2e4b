"""The control-plane server: enrollment, catalog compilation, reports, PuppetDB-style queries.

``create_app(config)`` builds the FastAPI application from a :class:`ServerConfig`; nothing
lives in module globals, so several servers (or tests) coexist in one process. The data
directory (``steward init``) holds the TLS material, the configuration, the repository copy,
the secrets store and, by default, the SQLite database.
"""

from steward.server.config import ServerConfig, load_config
from steward.server.init import init_data_dir

__all__ = ["ServerConfig", "init_data_dir", "load_config"]
