"""The same N-file work done by ``puppet apply`` and by ``ansible-playbook``, for comparison.

Each peer gets the settings that make it quiet and self-contained (its own var/conf/code
dirs, no colour, no retry files) but nothing that skips work it normally does: Puppet still
runs Facter, compiles the manifest and stores its report, as ``puppet apply`` always does.
Ansible is installed into its own venv under the benchmark cache, never into the project.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from apply_bench import (
    BENCH_DIR_NAME,
    ApplySeries,
    Tool,
    file_content,
    file_name,
    run_series,
    verify_files,
)
from common import BenchError, Context, Run, cache_dir, expect_code, measured_run, median


class Skip(Exception):
    """The peer is not available here; the message says why."""


def _puppet_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return '"' + escaped.replace("\n", "\\n") + '"'


def puppet_manifest(directory: Path, count: int) -> str:
    lines = [f"file {{ '{directory}': ensure => directory, mode => '0755' }}"]
    lines.extend(
        f"file {{ '{directory}/{file_name(i)}': ensure => file, "
        f"content => {_puppet_string(file_content(i))}, mode => '0644' }}"
        for i in range(count)
    )
    return "\n".join(lines) + "\n"


def puppet_version(puppet: str) -> str:
    result = subprocess.run([puppet, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def find_puppet(ctx: Context) -> str:
    if ctx.options.puppet:
        if not Path(ctx.options.puppet).exists():
            raise Skip(f"{ctx.options.puppet} does not exist")
        return str(ctx.options.puppet)
    puppet = shutil.which("puppet")
    if puppet is None:
        raise Skip("puppet is not installed (no 'puppet' on PATH; --puppet PATH to name it)")
    return puppet


def puppet_tool(ctx: Context, files: int) -> Tool:
    """``puppet apply`` of the equivalent manifest, in its own var/conf/code dirs."""
    puppet = find_puppet(ctx)
    work = ctx.workdir(f"puppet-{files}")
    target = work / "root" / BENCH_DIR_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    manifest = work / "site.pp"
    manifest.write_text(puppet_manifest(target, files))
    dirs = {name: work / name for name in ("var", "conf", "code", "log", "run")}
    for path in dirs.values():
        path.mkdir(exist_ok=True)
    argv = [
        puppet, "apply", "--detailed-exitcodes", "--color=false",
        f"--vardir={dirs['var']}", f"--confdir={dirs['conf']}", f"--codedir={dirs['code']}",
        f"--logdir={dirs['log']}", f"--rundir={dirs['run']}",
        str(manifest),
    ]  # fmt: skip

    def first() -> Run:
        run = measured_run(argv, workdir=work, cwd=work)
        expect_code(run, [2], "puppet apply (first run)")
        verify_files(target, files)
        return run

    def again() -> Run:
        run = measured_run(argv, workdir=work, cwd=work)
        expect_code(run, [0], "puppet apply (no-change run)")
        return run

    return Tool("puppet", first, again)


# -- Ansible ---------------------------------------------------------------------------------


def ansible_venv(ctx: Context) -> Path:
    """The cached venv holding ansible-core, created on first use (about a minute)."""
    venv = cache_dir() / "ansible-venv"
    if (venv / "bin" / "ansible-playbook").exists():
        return venv
    ctx.progress(f"installing ansible-core into {venv} (one time)")
    python = shutil.which("python3") or sys.executable
    steps = (
        [python, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "ansible-core"],
    )
    for argv in steps:
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=1800, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Skip(f"could not install ansible-core: {exc}") from exc
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise Skip(f"could not install ansible-core: {' '.join(argv[:4])}: {tail}")
    return venv


def ansible_version(venv: Path) -> str:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import ansible.release; print(ansible.release.__version__)"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip() or "unknown"


def ansible_playbook(directory: Path, count: int) -> str:
    """The same files as a task looping over a list; JSON is valid YAML."""
    items = [
        {"path": f"{directory}/{file_name(i)}", "content": file_content(i)} for i in range(count)
    ]
    play = {
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"bench_files": items},
        "tasks": [
            {
                "name": "benchmark directory",
                "ansible.builtin.file": {"path": str(directory), "state": "directory",
                                         "mode": "0755"},
            },
            {
                "name": "benchmark files",
                "ansible.builtin.copy": {
                    "dest": "{{ item.path }}",
                    "content": "{{ item.content }}",
                    "mode": "0644",
                },
                "loop": "{{ bench_files }}",
                "loop_control": {"label": "{{ item.path }}"},
            },
        ],
    }
    return json.dumps([play], indent=1)


_RECAP = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def _recap(run: Run) -> tuple[int, int]:
    """(changed, failed) from the play recap; ansible-playbook exits 0 either way."""
    match = _RECAP.search(run.stdout)
    if match is None:
        raise BenchError(f"ansible-playbook printed no recap: {run.stdout.strip()[-300:]}")
    return int(match.group(2)), int(match.group(4))


@dataclass(frozen=True, slots=True)
class AnsibleResult:
    files: int
    series: ApplySeries
    #: A no-change run of the same play with an empty list: start-up and the directory task.
    empty: Run
    version: str

    @property
    def per_resource(self) -> float:
        return max(median(self.series.nochange_walls) - self.empty.wall, 0.0) / self.files

    def extrapolate(self, files: int) -> float:
        return self.empty.wall + self.per_resource * files


def ansible_series(ctx: Context, files: int, runs: int) -> AnsibleResult:
    venv = ansible_venv(ctx)
    work = ctx.workdir(f"ansible-{files}")
    target = work / "root" / BENCH_DIR_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # pip compiled ansible's bytecode at install
    env.pop("PYTHONPYCACHEPREFIX", None)
    env.update(
        ANSIBLE_HOME=str(work / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(work / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_PYTHON_INTERPRETER=str(venv / "bin" / "python"),
        ANSIBLE_CONFIG=str(work / "ansible.cfg"),
    )
    (work / "ansible.cfg").write_text("[defaults]\n")
    playbook = work / "play.yml"
    playbook.write_text(ansible_playbook(target, files))
    empty_playbook = work / "empty.yml"
    empty_playbook.write_text(ansible_playbook(target, 0))
    base = [str(venv / "bin" / "ansible-playbook"), "-i", "localhost,"]

    def play(path: Path) -> Run:
        return measured_run([*base, str(path)], workdir=work, env=env, cwd=work,
                            keep_stdout=True)

    def first() -> Run:
        run = play(playbook)
        expect_code(run, [0, 2], "ansible-playbook (first run)")
        changed, failed = _recap(run)  # counts tasks: the loop is one task
        if failed or not changed:
            raise BenchError(f"ansible first run: changed={changed} failed={failed}")
        verify_files(target, files)
        return run

    def again() -> Run:
        run = play(playbook)
        expect_code(run, [0], "ansible-playbook (no-change run)")
        if _recap(run) != (0, 0):
            raise BenchError(f"ansible no-change run changed something: {_recap(run)}")
        return run

    series = run_series(Tool("ansible", first, again), runs, ctx.progress)
    empty = play(empty_playbook)
    expect_code(empty, [0], "ansible-playbook (empty list)")
    ctx.progress(f"empty play {empty.wall:.2f}s")
    return AnsibleResult(files, series, empty, ansible_version(venv))
