"""The pipeline's one service layer: every interface (REST, CLI, MCP) calls these methods.

Each operation authorises the caller (RBAC, per environment), acts, and writes an audit
entry, allowed or denied, so no interface can implement a rule twice or forget one. The
gates between states are all enforced here (what each waits for, in words, is
:mod:`steward.pipeline.gates`):

* ``analysed`` needs an impact report and a policy evaluation of the current head;
* ``approved`` needs the approval rules satisfied for the current head and impact digest,
  no hard-mandatory policy failing, every failing soft-mandatory policy overridden (for that
  digest) by a role allowed to, and no node whose proposed catalog fails to compile;
* ``deploying`` needs the environment branch still at the change's base (so what is merged
  is exactly what was analysed), then the rollout of :mod:`steward.pipeline.deploy.rollout`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from steward.access.authorize import Forbidden
from steward.access.principal import SYSTEM, Principal
from steward.access.rbac import Rbac, actor_for
from steward.catalog.redaction import redact, scrub_text
from steward.errors import StewardError
from steward.gitrepo import Author, DesiredStateRepo, GitError
from steward.pipeline.approvals import (
    Approvals,
    StaleApprovalError,
    check_reviewed,
    load_approval_rules,
)
from steward.pipeline.changes import Analyses, Analysis, Change, Changes
from steward.pipeline.deploy import Deployment, Deployments, NodeRunner, Strategy
from steward.pipeline.gates import ChangeView, GateError, change_gates
from steward.pipeline.impact import (
    ChangeInfo,
    ImpactReport,
    LivePredictor,
    StoreFleet,
    analyse_impact,
    live_counts,
)
from steward.pipeline.outcomes import settle_rollout
from steward.pipeline.policy import PolicySet, evaluate, load_policy_set, policy_input
from steward.pipeline.trace import change_trace
from steward.pipeline.transcripts import transcript_step
from steward.server.services import Services

log = logging.getLogger("steward.pipeline")


class Pipeline:
    """Built once per server (or per CLI invocation on the server host) from its services."""

    def __init__(self, services: Services, *, workers: int | None = None) -> None:
        repo = services.catalogs.desired
        if repo is None:
            raise StewardError(
                f"{services.config.repo_path} is a plain directory: the change pipeline needs "
                "the server's git repository (steward init creates desired.git)")
        self.services = services
        self.repo: DesiredStateRepo = repo
        config = services.config
        engine = services.engine
        self.environments = tuple(config.environments)
        if services.rbac is None:  # the server's own bindings: one authoriser for both
            raise StewardError("services without role bindings: use build_services")
        self.rbac: Rbac = services.rbac
        self.approvals = Approvals(
            engine, load_approval_rules(config.data_dir, roles=list(self.rbac.roles),
                                        environments=self.environments), self.rbac,
            clock=services.clock)
        self.changes = Changes(engine, repo, environments=self.environments, clock=services.clock)
        self.analyses = Analyses(engine, clock=services.clock)
        self.deployments = Deployments(engine, clock=services.clock)
        self.fleet = StoreFleet(engine)
        self.workers = workers
        self._policies: PolicySet | None = None

    # -- plumbing --------------------------------------------------------------------------

    @property
    def policies(self) -> PolicySet:
        if self._policies is None:
            directory = self.services.config.data_dir / "policies"
            self._policies = load_policy_set(directory) if directory.is_dir() \
                else PolicySet(directory, (), None, frozenset())
        return self._policies

    actor = staticmethod(actor_for)

    def _audit(self, actor: Principal | None, action: str, target: str | None, *,
               outcome: str = "succeeded", reason: str | None = None,
               parameters: Mapping[str, Any] | None = None) -> None:
        self.services.audit.record(actor=actor, action=action, target=target,
                                   outcome=outcome, reason=reason,
                                   parameters=dict(parameters or {}))

    def authorise(self, identity: Principal, permission: str,
                  environment: str | None, *, action: str, target: str | None) -> Principal:
        """The caller as an actor, or :class:`Forbidden` (audited as denied)."""
        try:
            actor = self.actor(identity)
            if "admin" not in actor.roles:
                self.rbac.check(actor, permission, environment)
        except Forbidden as exc:
            self._audit(identity, action, target, outcome="denied", reason=str(exc))
            raise
        return actor

    def _environment(self, name: str) -> str:
        if name not in self.environments:
            raise StewardError(f"unknown environment {name!r}; environments: "
                               f"{', '.join(self.environments)}")
        return name

    # -- reading ---------------------------------------------------------------------------

    def view(self, identity: Principal, change_id: str) -> ChangeView:
        change = self.changes.get(change_id)
        self.authorise(identity, "desired_state:read", change.environment,
                       action="change.read", target=f"change:{change_id}")
        return self._view(change)

    def _view(self, change: Change) -> ChangeView:
        analysis = self._analysis(change)
        return ChangeView(change, analysis, self._gates(change, analysis))

    def list(self, identity: Principal, *, state: str | None = None,
             environment: str | None = None) -> list[Change]:
        self.authorise(identity, "desired_state:read", environment, action="change.list",
                       target=None)
        return self.changes.list(state=state, environment=environment)

    def impact_report(self, identity: Principal, change_id: str) -> ImpactReport:
        """The stored impact report of the change's current head and digest.

        Reading it is reading the change (``desired_state:read``, which every reviewer
        holds): whoever may approve a change can read all of what they approve. Running a
        new analysis is :meth:`analyse` (``change:impact``); when there is no report yet,
        one is run only for a caller who holds that permission.
        """
        change = self.changes.get(change_id)
        self.authorise(identity, "desired_state:read", change.environment,
                       action="change.read", target=f"change:{change_id}")
        analysis = self._analysis(change)
        if analysis is None:
            if not self.rbac.has(self.actor(identity), "change:impact", change.environment):
                raise GateError(f"{change_id} has no impact report of head {change.head} yet; "
                                f"one with permission change:impact must run it "
                                f"(steward change impact {change_id} --again)")
            return self.analyse(identity, change_id).report
        return analysis.report

    def _analysis(self, change: Change) -> Analysis | None:
        if change.impact_digest is None:
            return None
        try:
            return self.analyses.latest(change.id, change.impact_digest)
        except StewardError:
            return None

    def _gates(self, change: Change, analysis: Analysis | None) -> dict[str, Any]:
        return change_gates(change, analysis, self.analyses, self.approvals)

    # -- proposing and analysing -----------------------------------------------------------

    def propose(self, identity: Principal, environment: str, *,
                edits: Mapping[str, str | bytes | None] | None = None,
                patch: str | None = None, base: str | None = None, title: str,
                message: str = "", analyse: bool = True) -> ChangeView:
        # Shown to every reviewer and agent (and in git): no credential spelled out in them.
        title, message = scrub_text(title), scrub_text(message)
        env = self._environment(environment)
        actor = self.authorise(identity, "change:propose", env, action="change.propose",
                               target=f"environment:{env}")
        try:
            change = self.changes.propose_edits(actor, env, base=base, edits=edits,
                                                patch=patch, title=title, message=message)
        except StewardError as exc:
            self._audit(actor, "change.propose", f"environment:{env}", outcome="failed",
                        reason=str(exc), parameters={"title": title,
                                                     "files": sorted(edits or {})})
            raise
        self._audit(actor, "change.propose", f"change:{change.id}",
                    parameters={"environment": env, "title": title, "head": change.head,
                                "base": change.base, "files": sorted(edits or {})})
        if analyse:
            self._analyse(change, actor)
        return self._view(self.changes.get(change.id))

    def propose_branch(self, identity: Principal, branch: str, environment: str,
                       message: str, *, analyse: bool = True) -> ChangeView:
        env = self._environment(environment)
        actor = self.authorise(identity, "change:propose", env, action="change.propose",
                               target=f"environment:{env}")
        change = self.changes.propose_branch(actor, branch, env, message)
        self._audit(actor, "change.propose", f"change:{change.id}",
                    parameters={"environment": env, "branch": branch, "head": change.head})
        if analyse:
            self._analyse(change, actor)
        return self._view(self.changes.get(change.id))

    def analyse(self, identity: Principal, change_id: str) -> Analysis:
        change = self.changes.get(change_id)
        actor = self.authorise(identity, "change:impact", change.environment,
                               action="change.analyse", target=f"change:{change_id}")
        return self._analyse(change, actor)

    async def analyse_live(self, identity: Principal, change_id: str,
                           predictor: LivePredictor, *, timeout: float = 120.0) -> Analysis:
        """Analyse, ask the affected nodes for a noop run of the proposed catalog, record.

        The live results are part of the report, so of its digest: approvals given to the
        earlier report are void (approvers bind to what they saw). Runs in the event loop
        (the nodes are asked through the server's run-now signals); the blocking parts run
        in the thread pool.
        """
        from starlette.concurrency import run_in_threadpool

        change = await run_in_threadpool(self.changes.get, change_id)
        actor = await run_in_threadpool(functools.partial(
            self.authorise, identity, "change:impact", change.environment,
            action="change.analyse", target=f"change:{change_id}"))
        report = await run_in_threadpool(self._impact, change)
        report = ImpactReport.from_json(await predictor.attach(
            report.to_json(), commit=change.head, change_id=change.id,
            requested_by=f"{actor.label} (live prediction of {change.id})"[:255],
            timeout=timeout))
        live = {n.certname: n.live.to_json() for n in report.nodes if n.live is not None}
        await run_in_threadpool(functools.partial(
            self._audit, actor, "change.live_prediction", f"change:{change.id}",
            parameters={"head": change.head, "timeout": timeout, "counts": live_counts(live),
                        "nodes": {name: {"status": value["status"], "report": value["report"]}
                                  for name, value in sorted(live.items())}}))
        return await run_in_threadpool(self._record_analysis, change, actor, report)

    def _analyse(self, change: Change, actor: Principal) -> Analysis:
        return self._record_analysis(change, actor, self._impact(change))

    def _impact(self, change: Change) -> ImpactReport:
        """The static impact report of the change's head (nothing recorded yet)."""
        if change.state in ("deploying", "deployed", "failed", "rolled_back", "rejected"):
            raise GateError(f"{change.id} is {change.state}; it can no longer be re-analysed")
        info = ChangeInfo(
            environment=change.environment, base=change.base, head=change.head, id=change.id,
            proposer=change.proposer,
            changed_files=tuple(self.repo.changed_files(change.base, change.head)),
            default_environment=self.services.catalogs.default_environment(),
        )
        pins = {n["certname"]: n["environment"]
                for n in self.services.enrollment.list_nodes() if n.get("environment")}
        return analyse_impact(info, self.repo.load(change.base), self.repo.load(change.head),
                              self.fleet, secrets=self.services.catalogs.secrets,
                              pins=pins, workers=self.workers)

    def _record_analysis(self, change: Change, actor: Principal,
                         report: ImpactReport) -> Analysis:
        """Policies, the analysis record and the change's new digest, all for ``report``."""
        verdicts = evaluate(self.policies,
                            policy_input(report, title=change.title, kind=change.kind),
                            change.environment).to_dict()
        analysis = self.analyses.record(change.id, change.head, actor.label, report, verdicts)
        updated = self.changes.set_impact(change.id, analysis.digest, actor=actor,
                                          expected_head=change.head)
        if updated.state == "proposed":
            self.changes.transition(change.id, "analysed", actor,
                                    detail={"digest": analysis.digest},
                                    expected_head=change.head)
        self._audit(actor, "change.analyse", f"change:{change.id}",
                    parameters={"digest": analysis.digest, "summary": report.summary.to_json(),
                                "policy": {k: verdicts[k] for k in
                                           ("passed", "blocking", "needs_override",
                                            "warnings")}})
        for name in verdicts.get("blocking", []) + verdicts.get("needs_override", []) \
                + verdicts.get("warnings", []):
            self._audit(SYSTEM, "policy.verdict", f"change:{change.id}", outcome="failed",
                        reason=name, parameters={"digest": analysis.digest})
        self._maybe_approve(self.changes.get(change.id), actor)
        return analysis

    # -- validation, overrides, approvals --------------------------------------------------

    def record_validation(self, identity: Principal, change_id: str, verdict: str,
                          evidence: str) -> dict[str, Any]:
        change = self.changes.get(change_id)
        actor = self.authorise(identity, "change:validate", change.environment,
                               action="change.validate", target=f"change:{change_id}")
        if verdict not in ("pass", "fail"):
            raise StewardError(f"verdict {verdict!r} is invalid: pass or fail")
        if change.impact_digest is None:
            raise GateError(f"{change_id} has no impact analysis to validate yet")
        result = self.analyses.validate(change_id, change.impact_digest, actor.label,
                                        verdict, evidence)  # type: ignore[arg-type]
        self._audit(actor, "change.validate", f"change:{change_id}",
                    parameters={"verdict": verdict, "digest": change.impact_digest})
        return result

    def override_policy(self, identity: Principal, change_id: str, policy: str,
                        reason: str, *, head: str, digest: str | None) -> ChangeView:
        """Override a failing soft-mandatory policy on the report the caller reviewed.

        ``head``/``digest`` are what the caller read: if the change has moved on, the
        override is refused (409, audited) and nothing is recorded.
        """
        reason = scrub_text(reason)
        change = self.changes.get(change_id)
        # Who may override is the policy's own list of roles (policies.yaml), not a
        # permission: an sshd exception needs security, a blast radius an approver.
        actor = self.actor(identity)
        self._check_reviewed(actor, "policy.override", change, head, digest,
                             what="override the policy")
        analysis = self._analysis(change)
        if analysis is None:
            raise GateError(f"{change_id} has no impact analysis; nothing to override")
        result = next((r for r in analysis.policy.get("results", [])
                       if r["name"] == policy), None)
        if result is None or result["passed"]:
            raise GateError(f"policy {policy!r} does not fail on {change_id}'s current "
                            "analysis; nothing to override")
        if result["level"] != "soft-mandatory":
            raise GateError(f"policy {policy!r} is {result['level']}: only soft-mandatory "
                            "policies can be overridden")
        allowed = set(result["overridable_by"])
        held = set(self.rbac.counts_as_in(actor, change.environment)) | set(actor.roles)
        if not (allowed & held) and "admin" not in held:
            exc = Forbidden(f"{actor.label} may not override policy {policy}: it needs role "
                            f"{' or '.join(sorted(allowed))}", permission="policy:override",
                            environment=change.environment, principal=actor.label)
            self._audit(actor, "policy.override", f"change:{change_id}", outcome="denied",
                        reason=str(exc))
            raise exc
        if _same(actor.name, change.proposer.name):
            raise Forbidden(f"{actor.label} proposed {change_id}; the proposer cannot "
                            "override policies on their own change", permission="policy:override",
                            environment=change.environment, principal=actor.label)
        if not reason.strip():
            raise StewardError("an override needs a reason (-m REASON)")
        self.analyses.override(change_id, analysis.digest, policy, actor.label, reason.strip())
        self._audit(actor, "policy.override", f"change:{change_id}",
                    parameters={"policy": policy, "reason": reason.strip(),
                                "digest": analysis.digest})
        self._maybe_approve(self.changes.get(change_id), actor)
        return self._view(self.changes.get(change_id))

    def approve(self, identity: Principal, change_id: str, *, head: str,
                digest: str | None, comment: str | None = None,
                verdict: str = "approve") -> ChangeView:
        """Record the caller's verdict on the head and impact digest it reviewed.

        ``head``/``digest`` are required: a verdict binds to what its giver saw, never to
        whatever is current when it arrives. A mismatch is refused (409, audited as denied)
        and nothing else is recorded.
        """
        change = self.changes.get(change_id)
        comment = scrub_text(comment) if comment else comment
        action = "change.approve" if verdict == "approve" else "change.reject"
        actor = self.actor(identity)
        analysis = self._analysis(change)
        if change.state not in ("analysed", "approved") or analysis is None:
            if change.state == "proposed":  # amended since: name what is there now
                self._check_reviewed(actor, action, change, head, digest,
                                     what="give the verdict")
            raise GateError(f"{change_id} is {change.state}: only an analysed change can be "
                            "approved or rejected by review")
        try:
            self.approvals.record(change, actor, verdict, head, digest or "",
                                  comment, impact_summary=analysis.summary)
        except (Forbidden, StaleApprovalError) as exc:
            self._audit(actor, action, f"change:{change_id}", outcome="denied",
                        reason=str(exc), parameters={"head": head, "digest": digest})
            raise
        self._audit(actor, action, f"change:{change_id}",
                    parameters={"head": head, "digest": digest, "comment": comment})
        if verdict == "reject":
            self.changes.reject(change_id, actor, comment or "rejected in review",
                                expected_head=head, expected_impact=digest)
        else:
            self._maybe_approve(self.changes.get(change_id), actor)
        return self._view(self.changes.get(change_id))

    def reject(self, identity: Principal, change_id: str, reason: str, *,
               head: str, digest: str | None) -> ChangeView:
        """Reject the change as the caller reviewed it (``head``/``digest``, 409 if stale).

        An analysed change gets a recorded verdict when the caller's role counts for it;
        otherwise (or before any analysis) ``change:reject`` closes the change.
        """
        reason = scrub_text(reason)
        change = self.changes.get(change_id)
        if change.state in ("analysed", "approved") and change.impact_digest:
            try:
                return self.approve(identity, change_id, head=head, digest=digest,
                                    comment=reason, verdict="reject")
            except StaleApprovalError:
                raise
            except Forbidden:
                pass
        actor = self.authorise(identity, "change:reject", change.environment,
                               action="change.reject", target=f"change:{change_id}")
        self._check_reviewed(actor, "change.reject", change, head, digest,
                             what="reject it")
        self.changes.reject(change_id, actor, reason, expected_head=head,
                            expected_impact=digest)
        self._audit(actor, "change.reject", f"change:{change_id}",
                    parameters={"reason": reason, "head": head, "digest": digest})
        return self._view(self.changes.get(change_id))

    def _check_reviewed(self, actor: Principal, action: str, change: Change, head: str,
                        digest: str | None, *, what: str) -> None:
        """:func:`check_reviewed`, with the refusal audited (as denied) before it is raised."""
        try:
            check_reviewed(change, head, digest, what=what)
        except StaleApprovalError as exc:
            self._audit(actor, action, f"change:{change.id}", outcome="denied",
                        reason=str(exc), parameters={"head": head, "digest": digest})
            raise

    def _maybe_approve(self, change: Change, actor: Principal) -> None:
        """Move an analysed change to approved once nothing is left to wait for."""
        if change.state != "analysed":
            return
        gates = self._gates(change, self._analysis(change))
        if gates["waiting_for"]:
            return
        # Compare-and-set on the head and digest the gates were judged for.
        self.changes.transition(change.id, "approved", actor,
                                detail={"approvals": gates["approval"]},
                                expected_head=change.head,
                                expected_impact=change.impact_digest)
        self._audit(SYSTEM, "change.approved", f"change:{change.id}",
                    parameters={"head": change.head, "digest": change.impact_digest})

    # -- deploying -------------------------------------------------------------------------

    def start_deploy(self, identity: Principal, change_id: str,
                     strategy: Strategy, *, head: str, digest: str | None) -> Deployment:
        """Check every gate again, merge, and record the planned rollout (not yet run).

        ``head``/``digest`` are what the deployer means to deploy: they must be the ones
        the change was approved at (409, audited, otherwise), so what reaches the nodes is
        what the approvers and the deployer saw.
        """
        change = self.changes.get(change_id)
        actor = self.authorise(identity, "change:deploy", change.environment,
                               action="change.deploy", target=f"change:{change_id}")
        if change.state != "approved":
            reason = (f"{change_id} is {change.state}, not approved: "
                      + "; ".join(self._gates(change, self._analysis(change))["waiting_for"]
                                  or ["it cannot be deployed in this state"]))
            self._audit(actor, "change.deploy", f"change:{change_id}", outcome="denied",
                        reason=reason)
            raise GateError(reason)
        self._check_reviewed(actor, "change.deploy", change, head, digest, what="deploy it")
        analysis = self._analysis(change)
        gates = self._gates(change, analysis)
        if analysis is None or gates["waiting_for"]:
            reason = f"{change_id} is no longer deployable: " + "; ".join(gates["waiting_for"])
            self._audit(actor, "change.deploy", f"change:{change_id}", outcome="denied",
                        reason=reason)
            raise GateError(reason)
        tip = self.repo.tip(change.environment)
        if tip != change.base:
            raise GateError(
                f"{change.environment} moved since {change_id} was analysed (base "
                f"{change.base[:12]}, now {tip[:12]}): what would be merged is not what was "
                f"analysed and approved; amend or re-propose the change on the new tip")
        nodes = [n.certname for n in analysis.report.nodes if n.status in ("changed", "new")]
        deployment = self.deployments.start(
            change_id=change_id, environment=change.environment, commit=change.head,
            nodes=nodes, strategy=strategy, started_by=actor.label)
        try:
            self.repo.merge(into=change.environment, commit=change.head,
                            author=Author(actor.name, actor.git_email),
                            message=f"Deploy {change_id}: {change.title}")
            self.changes.transition(change_id, "deploying", actor,
                                    detail={"deployment": deployment.id,
                                            "strategy": strategy.to_json()},
                                    expected_head=head, expected_impact=digest)
        except (GitError, StewardError) as exc:
            self.deployments.finish(deployment.id, "failed", f"merge failed: {exc}")
            self._audit(actor, "change.deploy", f"change:{change_id}", outcome="failed",
                        reason=str(exc))
            raise
        self._audit(actor, "change.deploy", f"change:{change_id}",
                    parameters={"deployment": deployment.id, "commit": change.head,
                                "digest": digest, "nodes": len(nodes),
                                "strategy": strategy.to_json()})
        return deployment

    async def run_deploy(self, deployment_id: str, runner: NodeRunner,
                         actor: Principal) -> Deployment:
        """Run the rollout, then record the change's outcome (and roll back if asked)."""
        from starlette.concurrency import run_in_threadpool

        final = await self.deployments.run(deployment_id, runner)
        change_id = final.change_id
        target = await run_in_threadpool(settle_rollout, self.changes, self._audit, final)
        if target == "failed" and final.strategy.auto_rollback:
            try:
                await self._auto_rollback(change_id, runner, actor)
            except StewardError as exc:
                log.warning("automatic rollback of %s failed: %s", change_id, exc)
                await run_in_threadpool(self._audit, SYSTEM, "change.rollback",
                                        f"change:{change_id}", outcome="failed",
                                        reason=str(exc))
        return final

    async def _auto_rollback(self, change_id: str, runner: NodeRunner, actor: Principal) -> None:
        from starlette.concurrency import run_in_threadpool

        rollback = await run_in_threadpool(self._propose_rollback, change_id, actor, SYSTEM)
        if rollback.state != "approved":
            return
        failed = await run_in_threadpool(self.deployments.for_change, change_id)
        timeout = failed[-1].strategy.node_timeout if failed else Strategy().node_timeout
        # Every node at once and no halt: a rollback restores what was approved before.
        # Steward deploys the rollback exactly as it was just analysed and approved.
        deployment = await run_in_threadpool(functools.partial(
            self.start_deploy, actor, rollback.id,
            Strategy(canary=0, batch_size="100%", max_failures=1_000_000,
                     node_timeout=timeout), head=rollback.head, digest=rollback.impact_digest))
        await self.run_deploy(deployment.id, runner, actor)

    def rollback(self, identity: Principal, change_id: str) -> ChangeView:
        """Create the reverting change, analyse it, and approve it on the fast path.

        The reverting change is proposed by Steward itself on the caller's request, so the
        caller (an executor or approver) may give its one fast-path approval; the rules still
        decide whether that is enough.
        """
        change = self.changes.get(change_id)
        actor = self.authorise(identity, "change:rollback", change.environment,
                               action="change.rollback", target=f"change:{change_id}")
        rollback = self._propose_rollback(change_id, actor, SYSTEM)
        return self._view(rollback)

    def _propose_rollback(self, change_id: str, actor: Principal, proposer: Principal) -> Change:
        rollback = self.changes.create_revert(change_id, proposer)
        self._audit(actor, "change.rollback", f"change:{change_id}",
                    parameters={"rollback": rollback.id, "head": rollback.head})
        analysis = self._analyse(rollback, actor)
        current = self.changes.get(rollback.id)
        if current.state == "analysed":
            try:
                self.approvals.record(current, actor, "approve", current.head, analysis.digest,
                                      f"fast-path approval of the rollback of {change_id}",
                                      impact_summary=analysis.summary)
                self._audit(actor, "change.approve", f"change:{rollback.id}",
                            parameters={"fast_path": True, "digest": analysis.digest})
            except Forbidden as exc:
                self._audit(actor, "change.approve", f"change:{rollback.id}",
                            outcome="denied", reason=str(exc))
            self._maybe_approve(self.changes.get(rollback.id), actor)
        return self.changes.get(rollback.id)

    def promote(self, identity: Principal, change_id: str, environment: str) -> ChangeView:
        env = self._environment(environment)
        actor = self.authorise(identity, "change:promote", env, action="change.promote",
                               target=f"change:{change_id}")
        promoted = self.changes.create_promotion(change_id, actor, env)
        self._audit(actor, "change.promote", f"change:{change_id}",
                    parameters={"promotion": promoted.id, "environment": env})
        self._analyse(promoted, actor)
        return self._view(self.changes.get(promoted.id))

    def record_transcript(self, identity: Principal, change_id: str, agent: str,
                          kind: str, content: Mapping[str, Any]) -> dict[str, Any]:
        """Attach one step of an agent's work to the change's audit trail.

        The entry's actor is the caller's own identity (never one named in the body), so a
        transcript cannot be written in another agent's name; reading the change is enough,
        since a step only describes what the caller did through its own tools.
        """
        change = self.changes.get(change_id)
        actor = self.authorise(identity, "desired_state:read", change.environment,
                               action="agent.transcript", target=f"change:{change_id}")
        step = transcript_step(agent, actor.name, kind, content)
        self._audit(actor, "agent.transcript", f"change:{change_id}", parameters=step)
        return dict(redact(step))  # as the trail holds it

    # -- tracing ---------------------------------------------------------------------------

    def trace(self, change_id: str) -> dict[str, Any]:
        """From proposal to the per-node reports that enforced it (``audit trace``)."""
        return change_trace(change_id, self.changes, self.deployments, self.services.audit)


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()

