"""A realistic benchmark repository, generated: one role, four profiles, ~300 resources a node.

Written the way a team would write it: profiles with typed parameters bound from
hierarchical data (``profile::param`` keys over six levels: node, datacenter, role, OS
family, environment, common), ``for_each`` over data lists and maps, Jinja templates that
render parameters, facts and ``lookup()`` values (one with a deep merge across levels), and
relationships between packages, files and services.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DATACENTERS = ("dc1", "dc2", "dc3")

STEWARD_YAML = """\
default_environment: production
data_dir: data
merge: first
hierarchy:
  - "nodes/{node}.yaml"
  - "dc/{facts.datacenter}.yaml"
  - "roles/{role}.yaml"
  - "os/{facts.os.family}.yaml"
  - "environments/{environment}.yaml"
  - "common.yaml"
"""

CLASSIFICATION_YAML = """\
default:
  role: bench
rules:
  - name: web nodes in the primary datacenter
    match:
      node: "node*"
      facts:
        datacenter: [dc1, dc2, dc3]
    role: bench
"""

ROLE_YAML = """\
description: The benchmark node - base, web, app and monitoring.
profiles:
  - base
  - web
  - app
  - monitoring
"""

BASE_PROFILE = """\
description: What every node gets - packages, admins, time, kernel settings, hosts, cron.
parameters:
  packages: {type: list, required: true}
  admins: {type: list, default: []}
  ntp_servers: {type: list, required: true}
  chrony_service: {type: string, default: chrony}
  sysctl: {type: map, default: {}}
  hosts: {type: list, default: []}
  cron_jobs: {type: list, default: []}
  motd_banner: {type: string, default: "Managed by Steward"}
resources:
  "package[{{ item }}]":
    for_each: "{{ params.packages }}"
    ensure: installed
  "group[{{ item.name }}]":
    for_each: "{{ params.admins }}"
    gid: "{{ item.uid }}"
  "user[{{ item.name }}]":
    for_each: "{{ params.admins }}"
    uid: "{{ item.uid }}"
    gid: "{{ item.name }}"
    home: "/home/{{ item.name }}"
    shell: /bin/bash
    comment: "{{ item.comment }}"
    groups: [adm]
    require: "group[{{ item.name }}]"
  "file[/etc/motd]":
    template: base/motd.j2
    mode: "0644"
  "file[/etc/chrony/chrony.conf]":
    template: base/chrony.conf.j2
    mode: "0644"
    notify: "service[{{ params.chrony_service }}]"
  "service[{{ params.chrony_service }}]":
    ensure: running
    enable: true
  "line[sysctl {{ item.key }}]":
    for_each: "{{ params.sysctl }}"
    path: /etc/sysctl.d/99-steward.conf
    line: "{{ item.key }} = {{ item.value }}"
    match: "^{{ item.key }} *="
  "host[{{ item.name }}]":
    for_each: "{{ params.hosts }}"
    ip: "{{ item.ip }}"
    host_aliases: ["{{ item.name }}.{{ facts.datacenter }}.example.com"]
  "cron[{{ item.name }}]":
    for_each: "{{ params.cron_jobs }}"
    command: "{{ item.command }}"
    minute: "{{ item.minute }}"
    hour: "{{ item.hour }}"
"""

WEB_PROFILE = """\
description: nginx with one virtual host per site.
parameters:
  sites: {type: list, required: true}
  user: {type: string, default: www-data}
  worker_connections: {type: integer, default: 1024}
  worker_processes: {type: integer, default: "{{ facts.processors.count }}"}
resources:
  "package[nginx]": {}
  "directory[/var/www]":
    mode: "0755"
  "directory[/etc/nginx/sites-available]":
    mode: "0755"
    require: "package[nginx]"
  "directory[/etc/nginx/sites-enabled]":
    mode: "0755"
    require: "package[nginx]"
  "file[/etc/nginx/nginx.conf]":
    template: web/nginx.conf.j2
    mode: "0644"
    require: "package[nginx]"
    notify: "service[nginx]"
  "directory[/var/www/{{ item.name }}]":
    for_each: "{{ params.sites }}"
    mode: "0755"
    owner: "{{ params.user }}"
  "file[/var/www/{{ item.name }}/index.html]":
    for_each: "{{ params.sites }}"
    template: web/index.html.j2
    mode: "0644"
  "file[/etc/nginx/sites-available/{{ item.name }}.conf]":
    for_each: "{{ params.sites }}"
    template: web/vhost.conf.j2
    mode: "0644"
    notify: "service[nginx]"
  "symlink[/etc/nginx/sites-enabled/{{ item.name }}.conf]":
    for_each: "{{ params.sites }}"
    target: "/etc/nginx/sites-available/{{ item.name }}.conf"
    notify: "service[nginx]"
  "service[nginx]":
    ensure: running
    enable: true
"""

APP_PROFILE = """\
description: The application - user, directories, settings, one file per module.
parameters:
  name: {type: string, default: shop}
  port: {type: integer, required: true}
  modules: {type: list, default: []}
resources:
  "group[{{ params.name }}]":
    system: true
  "user[{{ params.name }}]":
    gid: "{{ params.name }}"
    home: "/opt/{{ params.name }}"
    shell: /usr/sbin/nologin
    system: true
  "directory[/opt/{{ params.name }}]":
    owner: "{{ params.name }}"
    mode: "0750"
  "directory[/etc/{{ params.name }}]":
    mode: "0755"
  "directory[/etc/{{ params.name }}/conf.d]":
    mode: "0755"
  "directory[/var/log/{{ params.name }}]":
    owner: "{{ params.name }}"
    mode: "0750"
  "file[/etc/{{ params.name }}/app.yaml]":
    template: app/app.yaml.j2
    mode: "0640"
    group: "{{ params.name }}"
    notify: "service[{{ params.name }}]"
  "file[/etc/{{ params.name }}/conf.d/{{ item.name }}.conf]":
    for_each: "{{ params.modules }}"
    template: app/module.conf.j2
    mode: "0640"
    notify: "service[{{ params.name }}]"
  "exec[{{ params.name }}-migrate]":
    command: "/opt/{{ params.name }}/bin/migrate --config /etc/{{ params.name }}/app.yaml"
    refreshonly: true
    subscribe: "file[/etc/{{ params.name }}/app.yaml]"
  "service[{{ params.name }}]":
    ensure: running
    enable: true
    require: "exec[{{ params.name }}-migrate]"
"""

MONITORING_PROFILE = """\
description: Node exporter and one check definition per monitored thing.
parameters:
  checks: {type: list, default: []}
  exporter_port: {type: integer, default: 9100}
  scrape_interval: {type: integer, default: 30}
resources:
  "package[prometheus-node-exporter]": {}
  "directory[/etc/monitoring]":
    mode: "0755"
  "directory[/etc/monitoring/checks]":
    mode: "0755"
  "file[/etc/monitoring/checks/{{ item.name }}.yaml]":
    for_each: "{{ params.checks }}"
    template: monitoring/check.yaml.j2
    mode: "0644"
  "line[exporter args]":
    path: /etc/default/prometheus-node-exporter
    line: "ARGS=\\"--web.listen-address=:{{ params.exporter_port }}\\""
    match: "^ARGS="
    notify: "service[prometheus-node-exporter]"
  "line[exporter collectors]":
    path: /etc/default/prometheus-node-exporter
    line: "COLLECTORS=\\"cpu,meminfo,filesystem,netdev\\""
    match: "^COLLECTORS="
    notify: "service[prometheus-node-exporter]"
  "line[exporter textfile]":
    path: /etc/default/prometheus-node-exporter
    line: "TEXTFILE_DIR=/var/lib/prometheus/node-exporter"
    match: "^TEXTFILE_DIR="
  "line[exporter interval {{ params.scrape_interval }}]":
    path: /etc/default/prometheus-node-exporter
    line: "SCRAPE_INTERVAL={{ params.scrape_interval }}"
    match: "^SCRAPE_INTERVAL="
  "service[prometheus-node-exporter]":
    ensure: running
    enable: true
"""

TEMPLATES = {
    "base/motd.j2": """\
{{ params.motd_banner }}

  Host:        {{ facts.networking.fqdn }} ({{ facts.networking.ip }})
  System:      {{ facts.os.name }} {{ facts.os.release.full }} ({{ facts.os.architecture }})
  Role:        {{ role }} in {{ environment }}, datacenter {{ facts.datacenter }}
  Hardware:    {{ facts.processors.count }} CPUs, \
{{ (facts.memory.system.total_bytes / 1073741824) | round(1) }} GiB
  Support:     {{ lookup('support_contact') }}
{% for admin in params.admins %}
  Admin:       {{ admin.name }} <{{ admin.name }}@example.com>
{% endfor %}
""",
    "base/chrony.conf.j2": """\
# chrony for {{ node }} ({{ facts.datacenter }})
{% for server in params.ntp_servers %}
server {{ server }} iburst
{% endfor %}
driftfile /var/lib/chrony/chrony.drift
makestep 1.0 3
rtcsync
""",
    "web/nginx.conf.j2": """\
user {{ params.user }};
worker_processes {{ params.worker_processes }};
pid /run/nginx.pid;

events {
    worker_connections {{ params.worker_connections }};
}

http {
    sendfile on;
    server_tokens off;
    access_log /var/log/nginx/access.log;
    include /etc/nginx/sites-enabled/*.conf;
}
""",
    "web/vhost.conf.j2": """\
# {{ item.name }} on {{ node }}
server {
    listen {{ item.port }};
    server_name {{ item.name }}.{{ facts.datacenter }}.example.com {{ item.aliases | join(' ') }};
    root /var/www/{{ item.name }};
{% if item.tls %}
    listen {{ item.port + 1000 }} ssl;
    ssl_certificate /etc/ssl/certs/{{ item.name }}.pem;
{% endif %}
    location / {
        try_files $uri $uri/ =404;
    }
}
""",
    "web/index.html.j2": """\
<!doctype html>
<title>{{ item.name }}</title>
<p>{{ item.name }} served by {{ facts.networking.hostname }} in {{ facts.datacenter }}.</p>
""",
    "app/app.yaml.j2": """\
{% set settings = lookup('app::settings', merge='deep') %}
name: {{ params.name }}
listen: {{ facts.networking.ip }}:{{ params.port }}
datacenter: {{ facts.datacenter }}
log_level: {{ settings.log_level }}
pool:
  size: {{ settings.pool.size }}
  timeout: {{ settings.pool.timeout }}
features:
{% for name, enabled in settings.features | dictsort %}
  {{ name }}: {{ enabled | lower }}
{% endfor %}
modules: [{{ params.modules | map(attribute='name') | join(', ') }}]
""",
    "app/module.conf.j2": """\
# module {{ item.name }} of {{ params.name }}
[{{ item.name }}]
enabled = {{ item.enabled | lower }}
threads = {{ [item.threads, facts.processors.count] | min }}
cache = /var/cache/{{ params.name }}/{{ item.name }}
""",
    "monitoring/check.yaml.j2": """\
name: {{ item.name }}
target: {{ item.target }}
interval: {{ item.interval | default(params.scrape_interval) }}s
labels:
  node: {{ node }}
  datacenter: {{ facts.datacenter }}
  os: {{ facts.os.family | lower }}
""",
}


def _sizes(resources: int) -> dict[str, int]:
    """List lengths giving about ``resources`` resources (300 at the default scale)."""
    scale = max(resources, 60) / 300
    return {
        "packages": round(30 * scale),
        "admins": max(1, round(8 * scale)),
        "sysctl": round(12 * scale),
        "hosts": round(10 * scale),
        "cron": round(6 * scale),
        "sites": max(1, round(30 * scale)),
        "modules": round(30 * scale),
        "checks": round(50 * scale),
    }


def expected_resources(resources: int) -> int:
    """How many resources a node's catalog will hold for a requested size."""
    s = _sizes(resources)
    base = s["packages"] + 2 * s["admins"] + 3 + s["sysctl"] + s["hosts"] + s["cron"]
    web = 6 + 4 * s["sites"]
    app = 9 + s["modules"]
    monitoring = 8 + s["checks"]
    return base + web + app + monitoring


def _common_data(sizes: dict[str, int]) -> dict[str, Any]:
    return {
        "support_contact": "ops@example.com",
        "base::packages": [f"tool-{i:03d}" for i in range(sizes["packages"])],
        "base::admins": [
            {"name": f"admin{i:02d}", "uid": 2000 + i, "comment": f"Administrator {i}"}
            for i in range(sizes["admins"])
        ],
        "base::ntp_servers": ["0.pool.ntp.org", "1.pool.ntp.org"],
        "base::sysctl": {f"net.core.tunable_{i:02d}": 1024 + i for i in range(sizes["sysctl"])},
        "base::hosts": [
            {"name": f"svc{i:02d}", "ip": f"10.20.{i // 250}.{i % 250 + 1}"}
            for i in range(sizes["hosts"])
        ],
        "base::cron_jobs": [
            {"name": f"job{i:02d}", "command": f"/usr/local/bin/job{i:02d} --quiet",
             "minute": str(i * 7 % 60), "hour": "*"}
            for i in range(sizes["cron"])
        ],
        "web::sites": [
            {"name": f"site{i:02d}", "port": 8000 + i, "tls": i % 3 == 0,
             "aliases": [f"www.site{i:02d}.example.com"]}
            for i in range(sizes["sites"])
        ],
        "app::port": 8080,
        "app::modules": [
            {"name": f"module{i:02d}", "enabled": i % 4 != 0, "threads": 2 + i % 6}
            for i in range(sizes["modules"])
        ],
        "app::settings": {
            "log_level": "info",
            "pool": {"size": 10, "timeout": 30},
            "features": {"search": True, "recommendations": False, "checkout_v2": False},
        },
        "monitoring::checks": [
            {"name": f"check{i:02d}", "target": f"http://127.0.0.1:{8000 + i}/health",
             **({"interval": 15} if i % 5 == 0 else {})}
            for i in range(sizes["checks"])
        ],
    }


def write_repository(path: Path, resources: int = 300, node_overrides: int = 20) -> None:
    """Write the benchmark repository at ``path`` (which must not exist yet or be empty)."""
    sizes = _sizes(resources)
    files: dict[str, str] = {
        "steward.yaml": STEWARD_YAML,
        "classification.yaml": CLASSIFICATION_YAML,
        "roles/bench.yaml": ROLE_YAML,
        "profiles/base.yaml": BASE_PROFILE,
        "profiles/web.yaml": WEB_PROFILE,
        "profiles/app.yaml": APP_PROFILE,
        "profiles/monitoring.yaml": MONITORING_PROFILE,
        **{f"templates/{name}": text for name, text in TEMPLATES.items()},
    }
    data: dict[str, Any] = {
        "common.yaml": _common_data(sizes),
        "environments/production.yaml": {"app::settings": {"log_level": "warning"}},
        "os/Debian.yaml": {"base::chrony_service": "chrony", "web::user": "www-data"},
        "os/RedHat.yaml": {"base::chrony_service": "chronyd", "web::user": "nginx"},
        "roles/bench.yaml": {
            "app::settings": {"pool": {"size": 20}},
            "web::worker_connections": 2048,
        },
    }
    for index, dc in enumerate(DATACENTERS):
        data[f"dc/{dc}.yaml"] = {
            "base::ntp_servers": [f"ntp{n}.{dc}.example.com" for n in (1, 2)],
            "app::settings": {"pool": {"timeout": 20 + 10 * index},
                              "features": {"recommendations": index == 0}},
        }
    for index in range(node_overrides):
        data[f"nodes/{node_name(index * 7)}.yaml"] = {
            "web::worker_connections": 4096,
            "app::settings": {"features": {"checkout_v2": True}},
        }
    for name, document in data.items():
        files[f"data/{name}"] = yaml.safe_dump(document, sort_keys=False)
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def node_name(index: int) -> str:
    return f"node{index:04d}"


def node_facts(base: dict[str, Any], index: int) -> dict[str, Any]:
    """Distinct facts per node from a real fact set: name, address, OS family, size, DC."""
    facts = copy.deepcopy(base)
    name = node_name(index)
    fqdn = f"{name}.example.com"
    ip = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
    facts["hostname"], facts["fqdn"] = name, fqdn
    networking = facts.setdefault("networking", {})
    networking.update(hostname=name, fqdn=fqdn, ip=ip, domain="example.com")
    redhat = index % 4 == 3
    facts["os"] = {
        **facts.get("os", {}),
        "family": "RedHat" if redhat else "Debian",
        "name": "Rocky" if redhat else "Debian",
        "release": {"full": "9.4", "major": "9", "minor": "4"} if redhat
        else {"full": "12.7", "major": "12", "minor": "7"},
        "architecture": "x86_64" if redhat else "amd64",
    }
    facts.setdefault("processors", {})["count"] = 2 ** (index % 4 + 1)
    facts.setdefault("memory", {}).setdefault("system", {})["total_bytes"] = (
        (4 + index % 8 * 4) * 2**30
    )
    facts["datacenter"] = DATACENTERS[index % len(DATACENTERS)]
    return facts
