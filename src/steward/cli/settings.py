"""Where the commands find Steward: the data directory, and the server, token and CA.

The four options are defined here once (:data:`FLAGS`) and accepted in two places: before
the command, by the root callback :func:`collect` (``steward --server URL change list``),
and at the command, as always (``steward change list --server URL``), for the commands
decorated with :func:`with_data_dir` (``--data-dir``) or :func:`with_connection` (all four).
The first found wins: the command's option, the root's, the environment variable
(``STEWARD_DATA_DIR``, ``STEWARD_SERVER``, ``STEWARD_TOKEN``, ``STEWARD_CA_CERT``), the
default. A command reads the result, a :class:`Settings`, from ``ctx.obj`` with
:func:`settings`; the server URL, token and CA still missing then are found in the data
directory by :func:`steward.cli.client.resolve`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer

if TYPE_CHECKING:
    from steward.cli.client import ApiClient, Connection

R = TypeVar("R")

DEFAULT_DATA_DIR: Final = Path(".steward")


@dataclass(frozen=True, slots=True)
class Flag:
    """One shared option: its parameter name, flag, environment variable, type and help."""

    name: str
    flag: str
    envvar: str
    kind: type[Path] | type[str]
    help: str


DATA_DIR: Final = Flag("data_dir", "--data-dir", "STEWARD_DATA_DIR", Path,
                       "Steward's data directory, made by 'steward init' (default: "
                       "$STEWARD_DATA_DIR, else .steward).")
SERVER: Final = Flag("server", "--server", "STEWARD_SERVER", str,
                     "https://HOST:PORT (default: $STEWARD_SERVER, else the data "
                     "directory's config).")
TOKEN: Final = Flag("token", "--token", "STEWARD_TOKEN", str,
                    "API token (default: $STEWARD_TOKEN, else the data directory's admin "
                    "token).")
CA_CERT: Final = Flag("ca_cert", "--ca-cert", "STEWARD_CA_CERT", Path,
                      "CA to verify the server with (default: $STEWARD_CA_CERT, else "
                      "<data-dir>/tls/ca.crt).")
FLAGS: Final = (DATA_DIR, SERVER, TOKEN, CA_CERT)


@dataclass(frozen=True, slots=True)
class Settings:
    """The data directory and, for the commands that talk to the server, where it is."""

    data_dir: Path = DEFAULT_DATA_DIR
    server: str | None = None
    token: str | None = None
    ca_cert: Path | None = None

    @classmethod
    def of(cls, given: Mapping[str, Any]) -> Settings:
        """``given`` options (None: not given), else the environment, else the defaults."""
        values: dict[str, Any] = {}
        for flag in FLAGS:
            value = given.get(flag.name)
            if value is None and (text := os.environ.get(flag.envvar)):
                value = flag.kind(text)
            if value is not None:
                values[flag.name] = value
        return cls(**values)

    def connection(self) -> Connection:
        """The server, token and CA, completed from the data directory."""
        from steward.cli.client import resolve

        return resolve(self.data_dir, self.server, self.token, self.ca_cert)

    def client(self, timeout: float = 60.0) -> ApiClient:
        """An HTTPS client of the server (``timeout`` seconds per request)."""
        from steward.cli.client import ApiClient

        return ApiClient(self.connection(), timeout=timeout)


def _option(flag: Flag) -> Any:
    """The typer annotation of ``flag``'s option (None when not given)."""
    return Annotated[flag.kind | None, typer.Option(flag.flag, help=flag.help)]


def settings(ctx: typer.Context) -> Settings:
    """The settings of a command decorated with :func:`with_data_dir` or
    :func:`with_connection`."""
    if not isinstance(ctx.obj, Settings):
        raise RuntimeError(f"{ctx.command_path}: not decorated with with_data_dir or "
                           "with_connection")
    return ctx.obj


def _taking(flags: tuple[Flag, ...]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """A decorator adding ``flags`` to a command's options; the command's own values, if
    given, override those of the root callback, and ``ctx.obj`` holds the result."""

    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(command, eval_str=True)
        context = [name for name, p in signature.parameters.items()
                   if p.annotation is typer.Context]
        if not context:
            raise TypeError(f"{command.__name__} needs a 'ctx: typer.Context' parameter")
        added = [inspect.Parameter(flag.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=_option(flag)) for flag in flags]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> R:
            given = {flag.name: kwargs.pop(flag.name) for flag in flags}
            ctx: typer.Context = kwargs[context[0]]
            base = ctx.obj if isinstance(ctx.obj, Settings) else Settings.of({})
            ctx.obj = dataclasses.replace(
                base, **{name: value for name, value in given.items() if value is not None})
            return command(*args, **kwargs)

        # typer reads a command's options from its signature: the command's own, then these.
        run.__dict__["__signature__"] = signature.replace(
            parameters=[*signature.parameters.values(), *added])
        return run

    return decorate


#: For the commands that work on the data directory: ``--data-dir``.
with_data_dir: Final = _taking((DATA_DIR,))
#: For the commands that talk to the server: ``--data-dir``, ``--server``, ``--token``,
#: ``--ca-cert``.
with_connection: Final = _taking(FLAGS)


@with_connection
def collect(ctx: typer.Context) -> None:
    """The root callback: the shared options given before the command (their values, with
    the environment's and the defaults, are in ``ctx.obj`` once it ran)."""
