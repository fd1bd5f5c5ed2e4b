"""systemd services: running or stopped, enabled at boot or not, restarted on refresh.

State comes from ``systemctl show`` with a fixed property list, for every service of the run
in one call (prefetch); systemd prints one block per unit, in the order the units were named,
which is how blocks are matched to units (``Id`` is not enough: an alias such as
``sshd.service`` reports the unit it points to).

What counts as what:

* running: ``ActiveState`` active or reloading. ``activating`` is not running: that is also
  how a unit in a crash loop (``SubState=auto-restart``) looks, and ``systemctl start`` simply
  joins a start job already under way.
* enabled: ``UnitFileState`` enabled. ``enabled-runtime`` (only until reboot) and ``linked``
  are not, so ``enable: true`` makes them persistent. Units that cannot be enabled or
  disabled at all (static, indirect, generated, transient, alias) are in sync either way,
  because ``systemctl enable`` would change nothing and report a change every run.
* A unit that does not exist is unresolved (the package that ships it may be pending), except
  when the resource only wants it stopped and not enabled: a missing unit is both.
"""

from __future__ import annotations

from collections.abc import Sequence

from steward.engine.context import Context
from steward.engine.provider import Change, Provider, ProviderError, Unresolved
from steward.engine.runner import CommandResult

SHOW_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "UnitFileState",
                   "NeedDaemonReload")
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".target", ".mount", ".automount", ".path",
                 ".swap", ".slice", ".scope", ".device")
RUNNING_STATES = frozenset({"active", "reloading"})
#: UnitFileState values that ``systemctl enable``/``disable`` cannot change.
UNCHANGEABLE = frozenset({"static", "indirect", "generated", "transient", "alias", ""})
_CACHE = "service:state"

UnitState = dict[str, str]


def unit_name(name: str) -> str:
    """``nginx`` -> ``nginx.service``; names with a unit suffix are kept."""
    return name if name.endswith(UNIT_SUFFIXES) else f"{name}.service"


def show_command(units: Sequence[str]) -> list[str]:
    return ["systemctl", "show", "--no-pager", f"--property={','.join(SHOW_PROPERTIES)}",
            "--", *units]


def parse_show(text: str) -> list[UnitState]:
    """Split ``systemctl show`` output into one ``{property: value}`` per unit, in order."""
    blocks: list[UnitState] = []
    current: UnitState = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key] = value
    if current:
        blocks.append(current)
    return blocks


def _fail(result: CommandResult, doing: str) -> ProviderError:
    return ProviderError(f"{doing}: {result.describe()}")


def read_units(ctx: Context, units: Sequence[str]) -> dict[str, UnitState]:
    """One ``systemctl show`` for all ``units``; the result is merged into the run cache."""
    cache: dict[str, UnitState] = ctx.cache.setdefault(_CACHE, {})
    wanted = list(dict.fromkeys(units))
    if not wanted:
        return cache
    result = ctx.runner.run(show_command(wanted))
    if not result.ok:
        raise _fail(result, "reading service state")
    blocks = parse_show(result.stdout)
    if len(blocks) != len(wanted):
        raise ProviderError(
            f"reading service state: '{' '.join(result.argv)}' printed {len(blocks)} unit "
            f"blocks for {len(wanted)} units"
        )
    cache.update(zip(wanted, blocks, strict=True))
    return cache


class ServiceProvider(Provider):
    """ensure running/stopped via start/stop; enable via enable/disable; refresh restarts."""

    type_name = "service"

    #: Set when this run's sync started the service: a restart would add nothing.
    _started: bool = False

    @property
    def unit(self) -> str:
        return unit_name(self.name)

    @classmethod
    def prefetch(cls, ctx: Context, providers: Sequence[Provider]) -> None:
        units = [unit_name(p.name) for p in providers
                 if p.params.get("ensure") is not None or p.params.get("enable") is not None]
        read_units(ctx, units)

    def _state(self, *, fresh: bool = False) -> UnitState:
        cache: dict[str, UnitState] = self.ctx.cache.get(_CACHE, {})
        if fresh or self.unit not in cache:
            cache = read_units(self.ctx, [self.unit])
        return cache[self.unit]

    def check(self) -> list[Change]:
        ensure = self.params.get("ensure")
        enable = self.params.get("enable")
        if ensure is None and enable is None:
            return []
        state = self._state()
        load = state.get("LoadState", "")
        if load == "not-found":
            if ensure in (None, "stopped") and enable in (None, False):
                return []
            raise Unresolved(f"unit {self.unit} not found")
        if load in ("error", "bad-setting"):
            raise ProviderError(
                f"unit {self.unit} failed to load (LoadState={load}); see 'systemctl status "
                f"{self.unit}'"
            )
        if load == "masked" and (ensure == "running" or enable is True):
            raise ProviderError(
                f"unit {self.unit} is masked, so it can be neither started nor enabled "
                f"(unmask it first: systemctl unmask {self.unit})"
            )
        changes: list[Change] = []
        active, sub = state.get("ActiveState", ""), state.get("SubState", "")
        running = active in RUNNING_STATES
        if ensure == "running" and not running:
            changes.append(Change("ensure", "stopped", "running",
                                  f"started {self.unit} (was {active}/{sub})"))
        elif ensure == "stopped" and running:
            changes.append(Change("ensure", "running", "stopped", f"stopped {self.unit}"))
        if enable is not None:
            file_state = state.get("UnitFileState", "")
            if file_state in UNCHANGEABLE:
                if enable is False and file_state:
                    self.ctx.log("info", self.resource.ref,
                                 f"{self.unit} is {file_state}: it cannot be disabled (mask it "
                                 "to keep it from being started)")
            else:
                enabled = file_state == "enabled"
                if bool(enable) != enabled:
                    verb = "enabled" if enable else "disabled"
                    changes.append(Change("enable", enabled, bool(enable),
                                          f"{verb} {self.unit} (was {file_state})"))
        return changes

    def _systemctl(self, verb: str) -> None:
        result = self.ctx.runner.run(["systemctl", verb, "--", self.unit])
        if not result.ok:
            raise _fail(result, f"{verb} {self.unit}")

    def _reload_if_needed(self, state: UnitState) -> None:
        """A unit file changed on disk (by this run, often) must be loaded before use."""
        if state.get("NeedDaemonReload") == "yes":
            result = self.ctx.runner.run(["systemctl", "daemon-reload"])
            if not result.ok:
                raise _fail(result, "reloading systemd units")

    def sync(self, changes: list[Change]) -> None:
        state = self._state()
        for change in changes:
            if change.property == "ensure":
                if change.new == "running":
                    self._reload_if_needed(state)
                    self._systemctl("start")
                    self._started = True
                else:
                    self._systemctl("stop")
            elif change.property == "enable":
                self._systemctl("enable" if change.new else "disable")
        self.ctx.cache.get(_CACHE, {}).pop(self.unit, None)

    def refresh(self) -> str | None:
        """Restart when the service is (or should be) running; never start a stopped one."""
        ensure = self.params.get("ensure")
        if ensure == "stopped":
            return None
        if self._started:
            self.ctx.log("info", self.resource.ref,
                         f"not restarting {self.unit}: it was started in this run")
            return None
        state = self._state(fresh=True)
        if state.get("LoadState") == "not-found":
            raise Unresolved(f"unit {self.unit} not found")
        if ensure != "running" and state.get("ActiveState") not in RUNNING_STATES:
            return None
        command = self.params.get("restart_command")
        if command:
            result = self.ctx.runner.run(["/bin/sh", "-c", str(command)])
            if not result.ok:
                raise _fail(result, f"restart command of {self.unit}")
            return f"restarted {self.unit} with its restart_command"
        self._reload_if_needed(state)
        self._systemctl("restart")
        return f"restarted {self.unit}"
