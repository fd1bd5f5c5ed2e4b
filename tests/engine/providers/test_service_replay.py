"""The service provider against real systemd 252 transcripts, replayed.

systemctl needs systemd as PID 1, which CI does not have; the fixtures were captured from a
real systemd booted in namespaces (see fixtures/systemctl/README.md). Each transcript is
replayed in order, so these tests pin both the parsing and the exact commands issued.
"""

from __future__ import annotations

from typing import Any

import pytest

from steward.catalog.model import Catalog, Edge, Resource
from steward.engine.context import Context
from steward.engine.provider import Change, ProviderError, Unresolved
from steward.engine.providers.service import ServiceProvider, parse_show, show_command
from steward.engine.testing import ReplayRunner
from steward.engine.transaction import apply_catalog
from tests.engine.providers.replay import Transcript, load_commands, make_provider

MANY = ["cron", "steward-demo", "steward-static", "nosuch", "console-getty", "sshd",
        "e2scrub_reap"]


def replay(*commands: dict[str, Any]) -> tuple[Context, ReplayRunner, Transcript]:
    transcript = Transcript(list(commands))
    runner = ReplayRunner(responders=[transcript])
    return Context(runner=runner), runner, transcript


def service(ctx: Context, name: str, **params: Any) -> ServiceProvider:
    provider = make_provider(ctx, "service", name, **params)
    assert isinstance(provider, ServiceProvider)
    return provider


def test_show_output_is_split_per_unit_in_argument_order() -> None:
    [command] = load_commands("show_many")
    blocks = parse_show(command["stdout"])
    assert [b["Id"] for b in blocks] == [
        "cron.service", "steward-demo.service", "steward-static.service", "nosuch.service",
        "console-getty.service", "ssh.service", "e2scrub_reap.service"]
    assert blocks[3] == {"Id": "nosuch.service", "LoadState": "not-found",
                         "ActiveState": "inactive", "SubState": "dead", "UnitFileState": "",
                         "NeedDaemonReload": "no"}


def test_one_show_call_reads_every_service() -> None:
    ctx, runner, transcript = replay(*load_commands("show_many"))
    providers = {
        "cron": service(ctx, "cron", ensure="running", enable=True),
        "steward-demo": service(ctx, "steward-demo", ensure="running", enable=True),
        "steward-static": service(ctx, "steward-static.service", enable=False),
        "nosuch": service(ctx, "nosuch", ensure="running"),
        "console-getty": service(ctx, "console-getty", ensure="stopped", enable=False),
        "sshd": service(ctx, "sshd", ensure="running", enable=True),
        "e2scrub_reap": service(ctx, "e2scrub_reap", ensure="running"),
    }
    ServiceProvider.prefetch(ctx, list(providers.values()))
    assert runner.calls == [tuple(show_command([f"{n}.service" for n in MANY]))]
    assert transcript.done

    assert providers["cron"].check() == []
    assert providers["steward-demo"].check() == [
        Change("ensure", "stopped", "running",
               "started steward-demo.service (was inactive/dead)"),
        Change("enable", False, True, "enabled steward-demo.service (was disabled)"),
    ]
    # Static: no [Install] section, so enable/disable would change nothing.
    assert providers["steward-static"].check() == []
    assert "cannot be disabled" in ctx.logs[-1].message
    with pytest.raises(Unresolved, match=r"^unit nosuch.service not found$"):
        providers["nosuch"].check()
    # Masked counts as stopped and not enabled.
    assert providers["console-getty"].check() == []
    # An alias reads the unit it points to (Id=ssh.service).
    assert providers["sshd"].check() == []
    assert providers["e2scrub_reap"].check() == [
        Change("ensure", "stopped", "running",
               "started e2scrub_reap.service (was failed/failed)")]
    assert len(runner.calls) == 1  # no per-service reads after the prefetch


def test_a_missing_unit_is_in_sync_when_it_should_be_stopped() -> None:
    show_many = load_commands("show_many")[0]
    nosuch = parse_show(show_many["stdout"])[3]
    stdout = "".join(f"{k}={v}\n" for k, v in nosuch.items())
    ctx, runner, _ = replay({"argv": show_command(["nosuch.service"]), "returncode": 0,
                             "stdout": stdout, "stderr": ""})
    assert service(ctx, "nosuch", ensure="stopped", enable=False).check() == []
    # Nothing managed: nothing read.
    assert service(ctx, "other").check() == []
    assert len(runner.calls) == 1


def test_start_and_enable() -> None:
    show, start, enable, show_after = load_commands("start_enable")
    ctx, runner, transcript = replay(show, start, enable, show_after)
    provider = service(ctx, "steward-demo", ensure="running", enable=True)
    ServiceProvider.prefetch(ctx, [provider])
    changes = provider.check()
    assert [(c.property, c.old, c.new) for c in changes] == [
        ("ensure", "stopped", "running"), ("enable", False, True)]
    provider.sync(changes)
    # The next run sees what systemd now reports.
    assert service(Context(runner=runner), "steward-demo", ensure="running",
                   enable=True).check() == []
    assert transcript.done


def test_stop_and_disable() -> None:
    ctx, runner, transcript = replay(*load_commands("stop_disable"))
    provider = service(ctx, "steward-demo", ensure="stopped", enable=False)
    changes = provider.check()
    assert [(c.property, c.old, c.new, c.message) for c in changes] == [
        ("ensure", "running", "stopped", "stopped steward-demo.service"),
        ("enable", True, False, "disabled steward-demo.service (was enabled)"),
    ]
    provider.sync(changes)
    assert service(Context(runner=runner), "steward-demo", ensure="stopped",
                   enable=False).check() == []
    assert transcript.done


@pytest.mark.parametrize("ensure", [None, "running"])
def test_refresh_restarts_a_running_service(ensure: str | None) -> None:
    ctx, _, transcript = replay(*load_commands("restart"))
    assert service(ctx, "steward-demo", ensure=ensure).refresh() == (
        "restarted steward-demo.service")
    assert transcript.done


def test_refresh_leaves_a_stopped_service_stopped() -> None:
    inactive = load_commands("start_enable")[0]
    ctx, runner, transcript = replay(inactive)
    assert service(ctx, "steward-demo").refresh() is None
    assert transcript.done
    # Declared stopped: not even read.
    assert service(ctx, "steward-demo", ensure="stopped").refresh() is None
    assert len(runner.calls) == 1


def test_refresh_with_a_restart_command() -> None:
    show = load_commands("restart")[0]
    ctx, runner, transcript = replay(show)
    runner.responses[("/bin/sh", "-c", "apachectl graceful")] = (0, "", "")
    provider = service(ctx, "steward-demo", restart_command="apachectl graceful")
    assert provider.refresh() == "restarted steward-demo.service with its restart_command"
    assert runner.calls[-1] == ("/bin/sh", "-c", "apachectl graceful")
    assert transcript.done


def test_a_failing_restart_command_names_itself() -> None:
    show = load_commands("restart")[0]
    ctx, runner, _ = replay(show)
    runner.responses[("/bin/sh", "-c", "apachectl graceful")] = (1, "", "syntax error\n")
    provider = service(ctx, "steward-demo", restart_command="apachectl graceful")
    with pytest.raises(ProviderError, match=r"restart command of steward-demo.service: "
                                            r"'/bin/sh -c apachectl graceful' exited 1: "
                                            r"syntax error"):
        provider.refresh()


def test_no_restart_right_after_starting() -> None:
    show, start, enable, _ = load_commands("start_enable")
    ctx, runner, _ = replay(show, start, enable)
    provider = service(ctx, "steward-demo", ensure="running", enable=True)
    provider.sync(provider.check())
    assert provider.refresh() is None
    assert [c[1] for c in runner.calls] == ["show", "start", "enable"]
    assert ctx.logs[-1].message == "not restarting steward-demo.service: it was started in this run"


def test_changed_unit_file_is_reloaded_before_restart() -> None:
    ctx, runner, transcript = replay(*load_commands("daemon_reload"))
    assert service(ctx, "steward-demo", ensure="running").refresh() == (
        "restarted steward-demo.service")
    assert [c[1] for c in runner.calls] == ["show", "daemon-reload", "restart"]
    assert transcript.done


def test_crash_loop_is_not_running_and_runtime_enable_is_not_enabled() -> None:
    ctx, _, _ = replay(*load_commands("crash_loop"))
    provider = service(ctx, "steward-crash", ensure="running", enable=True)
    assert provider.check() == [
        Change("ensure", "stopped", "running",
               "started steward-crash.service (was activating/auto-restart)"),
        Change("enable", False, True, "enabled steward-crash.service (was enabled-runtime)"),
    ]


def test_a_masked_unit_is_refused_before_systemd_would_refuse_it() -> None:
    show, start = load_commands("masked_start")
    ctx, _, _ = replay(show)
    with pytest.raises(ProviderError, match=r"^unit console-getty.service is masked, so it can "
                                            r"be neither started nor enabled"):
        service(ctx, "console-getty", ensure="running").check()
    # Should it get masked between check and sync, systemd's own reason is what fails it.
    ctx, _, transcript = replay(start)
    provider = service(ctx, "console-getty", ensure="running")
    ctx.cache["service:state"] = {"console-getty.service": parse_show(show["stdout"])[0]}
    with pytest.raises(ProviderError) as failure:
        provider.sync([Change("ensure", "stopped", "running", "started")])
    assert str(failure.value) == (
        "start console-getty.service: 'systemctl start -- console-getty.service' exited 1: "
        "Failed to start console-getty.service: Unit console-getty.service is masked.")
    assert transcript.done


def test_without_systemd_the_error_says_so() -> None:
    ctx, _, _ = replay(*load_commands("no_systemd"))
    provider = service(ctx, "cron", ensure="running")
    with pytest.raises(ProviderError) as failure:
        ServiceProvider.prefetch(ctx, [provider])
    assert "reading service state: 'systemctl show --no-pager" in str(failure.value)
    assert "System has not been booted with systemd as init system (PID 1)" in str(
        failure.value)


def _catalog(resources: list[Resource], edges: list[Edge]) -> Catalog:
    return Catalog("node1.test", "test", resources, edges)


def test_engine_reports_a_missing_unit_as_pending_behind_its_package(tmp_path: Any) -> None:
    show_many = load_commands("show_many")[0]
    nosuch = parse_show(show_many["stdout"])[3]
    stdout = "".join(f"{k}={v}\n" for k, v in nosuch.items())
    listing = ("dpkg-query", "-W", "-f", "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n")
    runner = ReplayRunner(
        responses={tuple(show_command(["nosuch.service"])): (0, stdout, ""),
                   listing: (0, "apt\t2.6.1\tii \n", "")},
        programs={"apt-get", "dpkg-query"},
    )
    package = Resource("package", "nosuch", {})
    unit = Resource("service", "nosuch", {"ensure": "running"})
    edges = [Edge("package[nosuch]", "service[nosuch]", "required-by")]
    ctx = Context(runner=runner, noop=True, state_dir=tmp_path)
    run = apply_catalog(_catalog([package, unit], edges), ctx)
    statuses = {r.resource.ref: (r.status, r.message) for r in run.results}
    assert statuses == {
        "package[nosuch]": ("noop", None),
        "service[nosuch]": ("pending", "unit nosuch.service not found; expected after pending "
                                       "changes to package[nosuch]"),
    }
    alone = apply_catalog(_catalog([unit], []), Context(runner=runner, noop=True,
                                                        state_dir=tmp_path))
    assert [(r.status, r.message) for r in alone.results] == [
        ("failed", "unit nosuch.service not found")]


def test_engine_restarts_a_notified_running_service(tmp_path: Any) -> None:
    show, restart = load_commands("restart")
    transcript = Transcript([show, show, restart])
    runner = ReplayRunner(responders=[transcript],
                          responses={("/bin/sh", "-c", "deploy"): (0, "", "")})
    deploy = Resource("exec", "deploy", {})
    demo = Resource("service", "steward-demo", {"ensure": "running"})
    edges = [Edge("exec[deploy]", "service[steward-demo]", "notifies")]
    run = apply_catalog(_catalog([deploy, demo], edges), Context(runner=runner,
                                                                 state_dir=tmp_path))
    [_, result] = run.results
    assert result.status == "changed"
    assert [(e.property, e.status, e.message) for e in result.events] == [
        ("refresh", "success", "restarted steward-demo.service (triggered by exec[deploy])")]
    assert transcript.done
