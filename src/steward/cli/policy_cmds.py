"""Policy commands: ``steward policy test`` (and ``check``) over a policy directory.

Registered on the main typer app by :func:`register`. The Rego engine is imported inside the
commands, so ``steward --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steward.cli.settings import settings, with_data_dir
from steward.errors import StewardError

policy_app = typer.Typer(help="Test and check Rego policies (docs/policy.md).",
                         no_args_is_help=True)

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Policy directory (default: <data-dir>/policies)."),
]


def _directory(data_dir: Path, directory: Path | None) -> Path:
    return directory if directory is not None else data_dir / "policies"


def _fail(exc: StewardError) -> typer.Exit:
    """Print a user error as one line (also under CliRunner, which bypasses cli.main.run)."""
    typer.echo(f"steward: error: {exc}", err=True)
    return typer.Exit(exc.exit_code)


@policy_app.command("test")
@with_data_dir
def run_tests(
    ctx: typer.Context,
    directory: DirOption = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also print where each test is defined.")] = False,
) -> None:
    """Run the test_* rules of every *_test.rego file (a test passes when it is true)."""
    from steward.pipeline.policy import run_policy_tests

    try:
        report = run_policy_tests(_directory(settings(ctx).data_dir, directory))
    except StewardError as exc:
        raise _fail(exc) from None
    for case in report.cases:
        line = f"{'PASS' if case.passed else 'FAIL'} {case.name}"
        if verbose or not case.passed:
            line += f"  ({case.location})"
        if case.detail:
            line += f": {case.detail}"
        typer.echo(line)
    failed = len(report.failed)
    typer.echo(f"{len(report.cases) - failed} passed, {failed} failed")
    if not report.ok:
        raise typer.Exit(1)


@policy_app.command("check")
@with_data_dir
def check(
    ctx: typer.Context,
    directory: DirOption = None,
) -> None:
    """Validate policies.yaml, compile every policy it lists and evaluate each once on an
    empty input (recursion, evaluation limits); print the policy table."""
    from steward.pipeline.policy import check_policy_set, load_policy_set

    try:
        policy_set = load_policy_set(_directory(settings(ctx).data_dir, directory))
        check_policy_set(policy_set)
    except StewardError as exc:
        raise _fail(exc) from None
    for spec in sorted(policy_set.policies, key=lambda spec: spec.name):
        environments = "*" if spec.environments is None else ",".join(spec.environments)
        roles = f" override: {','.join(spec.override_roles)}" if spec.override_roles else ""
        typer.echo(f"{spec.name}  {spec.level}  environments: {environments}{roles}")
    typer.echo(f"{len(policy_set.policies)} policies OK in {policy_set.directory}")


def register(app: typer.Typer) -> None:
    """Add ``steward policy ...`` to the main CLI."""
    app.add_typer(policy_app, name="policy")
