"""The assistant evaluation's fixed fleet: 37 nodes with facts, catalogs and two reports each.

The same fleet as the query tests' (tests/query/fleet.py), here so that
``steward eval assistant`` can build it without the test suite: every run of the evaluation
asks its questions of exactly the same data.

Everything is built with Steward's real formats: catalogs with ``steward.catalog.model``
(sealed, so hashed like compiled ones) and reports with ``steward.engine.report.build_report``
over synthetic run results, then ingested through the public ``Store`` API. ``NodeSpec``
keeps what each node was given, so tests compute expected answers from the spec, not from
the store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from steward.catalog.model import Catalog, Edge, Resource
from steward.engine.report import build_report
from steward.engine.transaction import Event, ResourceResult, RunResult
from steward.store import Store


class Clock:
    """A settable \"now\" for the store, so reports' receive_time is fixed."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2024, 5, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

CODE_A = "urn:puppet:code-id:1:519e…;production"
CODE_B = "urn:puppet:code-id:1:77aa;production"
FAILED = {"web04.example.com", "db03.example.com", "db05.example.com", "app06.example.com"}
DEACTIVATED = "web99.example.com"
FIRST_RUN = datetime(2024, 5, 4, 10, 0, tzinfo=UTC)  # a Saturday
SUNDAY = datetime(2024, 5, 5, 9, 0, tzinfo=UTC)
MONDAY = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)

PROFILE_RESOURCES: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "base": [
        ("package", "openssh-server", {"ensure": "installed"}),
        ("service", "sshd", {"ensure": "running", "enable": True}),
        ("file", "/etc/motd", {"content": "Managed by Steward\n", "mode": "0644"}),
        ("user", "admin", {"uid": 1500, "shell": "/bin/bash"}),
    ],
    "httpd": [
        ("package", "httpd", {"ensure": "installed"}),
        ("file", "/etc/httpd/conf/httpd.conf", {"content": "Listen 80\n"}),
        ("service", "httpd", {"ensure": "running"}),
    ],
    "nginx": [
        ("package", "nginx", {"ensure": "installed"}),
        ("file", "/etc/nginx/nginx.conf", {"content": "events {}\n"}),
        ("service", "nginx", {"ensure": "running"}),
    ],
    "remote_mgmt": [
        ("package", "mosh", {"ensure": "installed"}),
        ("file", "/etc/ssh/sshd_config.d/mgmt.conf", {"content": "AllowGroups admin\n"}),
    ],
    "postgresql": [
        ("package", "postgresql", {"ensure": "installed"}),
        ("directory", "/var/lib/postgresql", {"owner": "postgres", "mode": "0700"}),
        ("service", "postgresql", {"ensure": "running"}),
    ],
    "app": [
        ("package", "python3", {"ensure": "installed"}),
        ("exec", "migrate-db", {"command": "/usr/bin/migrate", "creates": "/srv/.migrated"}),
    ],
    "haproxy": [
        ("package", "haproxy", {"ensure": "installed"}),
        ("service", "haproxy", {"ensure": "running"}),
    ],
    "monitoring": [
        ("package", "prometheus-node-exporter", {"ensure": "installed"}),
    ],
}


@dataclass
class NodeSpec:
    certname: str
    role: str
    index: int
    operatingsystem: str
    profiles: list[str]
    code_id: str | None
    latest_status: str
    noop: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    catalog: Catalog | None = None
    #: (receive_time, hash) of each stored report, oldest first.
    reports: list[tuple[datetime, str]] = field(default_factory=list)

    @property
    def family(self) -> str:
        return "RedHat" if self.operatingsystem == "CentOS" else "Debian"

    @property
    def resource_refs(self) -> set[tuple[str, str]]:
        """PuppetDB spellings: (Type, title), classes included."""
        assert self.catalog is not None
        refs = {(r.type.capitalize(), r.title) for r in self.catalog.resources}
        refs |= {("Class", f"Role::{self.role.capitalize()}")}
        refs |= {("Class", f"Profile::{p.capitalize()}") for p in self.profiles}
        return refs


def _specs() -> list[NodeSpec]:
    specs: list[NodeSpec] = []

    def add(role: str, count: int, os_of: Any, profiles_of: Any, prefix: str | None = None
            ) -> None:
        for i in range(1, count + 1):
            certname = f"{prefix or role}{i:02d}.example.com"
            code_id = None if role == "monweb" else (CODE_A if i % 2 == 0 else CODE_B)
            status = "failed" if certname in FAILED else ("unchanged" if i % 3 else "changed")
            spec = NodeSpec(certname, role, i, os_of(i), ["base", *profiles_of(i)], code_id,
                            status, noop=role == "lb")
            if spec.noop:
                spec.latest_status = "unchanged"
            specs.append(spec)

    add("web", 12, lambda i: "CentOS" if i <= 6 else "Debian",
        lambda i: (["httpd"] if i <= 6 else ["nginx"]) + (["remote_mgmt"] if i % 2 else []))
    add("db", 8, lambda i: "CentOS" if i <= 4 else "Debian",
        lambda i: ["postgresql"] + (["remote_mgmt"] if i % 2 == 0 else []))
    add("app", 8, lambda i: "Debian" if i <= 4 else "CentOS",
        lambda i: ["app"] + (["httpd"] if i <= 2 else []))
    add("lb", 4, lambda i: "Debian", lambda i: ["haproxy"])
    add("monweb", 4, lambda i: "Debian", lambda i: ["monitoring"])
    specs.append(NodeSpec(DEACTIVATED, "web", 99, "CentOS", ["base", "httpd", "remote_mgmt"],
                          CODE_B, "changed"))
    return specs


def _facts(spec: NodeSpec) -> dict[str, Any]:
    i = spec.index
    family = spec.family
    return {
        "os": {"family": family, "name": spec.operatingsystem,
               "release": {"major": "9" if family == "RedHat" else "12",
                           "full": "9.3" if family == "RedHat" else "12.5"}},
        "operatingsystem": spec.operatingsystem,
        "puppetversion": "8.4.0" if i % 2 == 0 else "7.28.0",
        "kernel": "Linux",
        "hostname": spec.certname.split(".")[0],
        "fqdn": spec.certname,
        "datacenter": f"dc{i % 3 + 1}",
        "processors": {"count": 2 + i % 3 * 2,
                       "models": ["Intel Xeon"] * (2 + i % 3 * 2)},
        "networking": {
            "eth0": {"macaddress": f"52:54:00:00:{i:02x}:01", "ip": f"10.0.{i}.10"},
            "lo": {"ip": "127.0.0.1"},
        },
        "memory": {"system": {"total_bytes": 2**30 * (4 + i % 4)}},
        "is_virtual": i % 4 != 0,
        "uptime_seconds": 3600 * i,
        "load_average": round(0.25 * i, 2),
        "ssh_authorized_keys": [],
    }


def _catalog(spec: NodeSpec) -> Catalog:
    resources: list[Resource] = []
    edges: list[Edge] = []
    for profile in spec.profiles:
        declared = PROFILE_RESOURCES[profile]
        for line, (type_name, title, parameters) in enumerate(declared, start=3):
            params = dict(parameters)
            if type_name in ("file", "directory"):
                params["path"] = title
            no_line = type_name == "exec"
            resources.append(Resource(
                type_name, title, params, (f"profile:{profile}", f"role:{spec.role}"),
                None if no_line else f"profiles/{profile}.yaml", None if no_line else line * 4))
        packages = [r for r in declared if r[0] == "package"]
        for type_name, title, _ in declared:
            if type_name == "service" and packages:
                edges.append(Edge(f"package[{packages[0][1]}]", f"service[{title}]",
                                  "before"))
            if type_name == "file" and any(r[0] == "service" for r in declared):
                service = next(r for r in declared if r[0] == "service")
                edges.append(Edge(f"file[{title}]", f"service[{service[1]}]", "notifies"))
    catalog = Catalog(node=spec.certname, environment="production", resources=resources,
                      edges=edges, code_id=spec.code_id,
                      classification={"roles": [spec.role], "profiles": list(spec.profiles),
                                      "rules": [f"{spec.role} nodes"]})
    return catalog.seal()


def _run(spec: NodeSpec, catalog: Catalog, latest: bool, start: datetime) -> dict[str, Any]:
    results: list[ResourceResult] = []
    failing = latest and spec.latest_status == "failed"
    changing = (not latest) or spec.latest_status == "changed"
    failed_ref: str | None = None
    for position, resource in enumerate(catalog.resources):
        result = ResourceResult(resource, evaluation_time=0.001 * (position + 1))
        if failing and resource.type == "package" and failed_ref is None and position > 3:
            failed_ref = resource.ref
            result.status = "failed"
            result.message = "package install failed"
            result.events.append(Event("ensure", "absent", "installed", "failure",
                                       "could not install"))
        elif failed_ref is not None and resource.type == "service" and \
                result.resource.title in ("httpd", "postgresql", "nginx", "haproxy"):
            result.status = "skipped"
            result.failed_dependencies = [failed_ref]
            result.message = f"skipped: dependency {failed_ref} failed"
        elif spec.noop and latest and resource.type == "file":
            result.status = "noop"
            result.events.append(Event("content", "{sha256}old", "{sha256}new", "noop",
                                       "would change content"))
        elif changing and resource.type in ("file", "directory") and position % 2 == 0:
            result.status = "changed"
            result.events.append(Event("mode", "0600", resource.parameters.get("mode", "0644"),
                                       "success", "mode changed",
                                       corrective_change=latest))
        results.append(result)
    begin = start.timestamp()
    run = RunResult(catalog, spec.noop and latest, results, begin, begin + 4.5, frozenset(),
                    [{"level": "info", "source": "steward", "message": "applied"}])
    report = build_report(run)
    report["transaction_uuid"] = str(uuid.uuid5(uuid.NAMESPACE_DNS,
                                                f"{spec.certname}/{int(latest)}"))
    return report


@dataclass
class Fleet:
    specs: list[NodeSpec]

    def by_name(self) -> dict[str, NodeSpec]:
        return {s.certname: s for s in self.specs}

    @property
    def active(self) -> list[NodeSpec]:
        return [s for s in self.specs if s.certname != DEACTIVATED]


def seed(store: Store, clock: Clock) -> Fleet:
    specs = _specs()
    for spec in specs:
        spec.facts = _facts(spec)
        spec.catalog = _catalog(spec)
        produced = FIRST_RUN - timedelta(hours=1)
        store.replace_facts(spec.certname, "production", spec.facts, produced)
        store.replace_catalog(spec.catalog.to_json(), produced)
        first_start = FIRST_RUN + timedelta(minutes=spec.index)
        latest_start = (SUNDAY if spec.index % 2 == 0 else MONDAY) + timedelta(
            minutes=spec.index)
        for latest, start in ((False, first_start), (True, latest_start)):
            clock.now = start + timedelta(seconds=30)
            digest = store.store_report(_run(spec, spec.catalog, latest, start))
            spec.reports.append((clock.now, digest))
    store.deactivate_node(DEACTIVATED, MONDAY + timedelta(hours=12))
    return Fleet(specs)
