"""Provider registry, imported lazily so a run only loads the providers its catalog uses."""

from __future__ import annotations

import importlib

from steward.engine.provider import Provider

_REGISTRY = {
    "file": ("steward.engine.providers.file", "FileProvider"),
    "directory": ("steward.engine.providers.directory", "DirectoryProvider"),
    "symlink": ("steward.engine.providers.symlink", "SymlinkProvider"),
    "line": ("steward.engine.providers.line", "LineProvider"),
    "host": ("steward.engine.providers.host", "HostProvider"),
    "package": ("steward.engine.providers.package", "PackageProvider"),
    "service": ("steward.engine.providers.service", "ServiceProvider"),
    "user": ("steward.engine.providers.user", "UserProvider"),
    "group": ("steward.engine.providers.group", "GroupProvider"),
    "exec": ("steward.engine.providers.exec", "ExecProvider"),
    "cron": ("steward.engine.providers.cron", "CronProvider"),
}


def provider_class(type_name: str) -> type[Provider]:
    module_name, class_name = _REGISTRY[type_name]
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls


def known_types() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))
