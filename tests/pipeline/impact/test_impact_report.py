"""The typed impact report: its JSON is the schema's document, and reads back to the same
model and the same bytes (so a stored report's digest still holds)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from steward.access.principal import Principal
from steward.pipeline.impact.render import render_text
from steward.pipeline.impact.report import (
    BlastRadius,
    ClassificationChange,
    CompileFailure,
    CurrentSide,
    EdgeChange,
    ImpactChange,
    ImpactReport,
    ImpactSelection,
    ImpactSummary,
    LivePrediction,
    NodeImpact,
    PropertyChange,
    ProposedSide,
    Provenance,
    ResourceChange,
    SensitiveSummary,
)
from steward.pipeline.policy.inputs import policy_input, resource_changes

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "schemas" / "impact-report.schema.json").read_text())
POLICY_SCHEMA = json.loads((ROOT / "schemas" / "policy-input.schema.json").read_text())
HASH = "sha256:" + "a" * 64


def node(certname: str, status: str = "changed", *, full: bool = True) -> NodeImpact:
    """A node entry; ``full`` sets every optional part (live, errors, secrets)."""
    content = ResourceChange(
        "file[/etc/app.conf]", "file", "/etc/app.conf", "modify",
        Provenance("profiles/app.yaml", 3), Provenance("profiles/app.yaml", 4),
        (PropertyChange("content", "[redacted]", "[redacted]", True, True),
         PropertyChange("mode", "0644", "0600", False)),
        "--- /etc/app.conf\n+++ /etc/app.conf\n@@ -1 +1 @@\n-[redacted]\n+[redacted]\n",
        True if full else None)
    added = ResourceChange("package[htop]", "package", "htop", "add", None,
                           Provenance(None, None),
                           (PropertyChange("ensure", None, "present", False),), None,
                           False if full else None)
    return NodeImpact(
        certname=certname, status=status,
        current=CurrentSide(HASH, "1" * 40, None,
                            CompileFailure("boom", "roles/web.yaml:3") if full else None),
        proposed=ProposedSide(HASH, "2" * 40, "production"),
        classification=ClassificationChange({"roles": ["web"]}, {"roles": ["web", "db"]})
        if full else None,
        resources=(content, added),
        edges=(EdgeChange("add", "package[htop]", "service[app]", "before"),),
        sensitive_inputs=("templates/app.j2",) if full else None,
        error=None,
        live=LivePrediction("reported", 2, "r" * 64,
                            ({"resource": "file[/etc/app.conf]", "property": "mode",
                              "old": "0644", "new": "0600", "corrective_change": False},),
                            (), None) if full else None,
    )


def report(*, full: bool = True) -> ImpactReport:
    return ImpactReport(
        format=1,
        change=ImpactChange("chg-1", "production", "1" * 40, "2" * 40,
                            Principal("planner-bot", "agent") if full else None,
                            ("data/roles/web.yaml",), ("app::mode",)),
        selection=ImpactSelection("inputs", "data keys app::mode changed", 10, 2, 0, 0),
        summary=ImpactSummary(2, 2, 0, 0, 0, 0, 2, 0, 2, BlastRadius(2, 4, 20.0), "medium",
                              ("changes 2 sensitive values",),
                              SensitiveSummary(2, 2, 2, ("templates/app.j2",)) if full
                              else None),
        nodes=(node("db1", full=full), node("web1", full=full)),
        digest="",
    ).sealed()


@pytest.mark.parametrize("full", [True, False], ids=["every-optional-part", "none"])
def test_the_json_is_the_schemas_document_and_reads_back_byte_for_byte(full: bool) -> None:
    typed = report(full=full)
    document = typed.to_json()
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    assert typed.verify_digest()
    text = typed.json_text()
    again = ImpactReport.from_json(json.loads(text))
    assert again == typed
    assert again.json_text() == text
    assert again.verify_digest()


def test_absent_optional_keys_stay_absent() -> None:
    """A key the schema makes optional is not invented on the way back out."""
    document = report(full=False).to_json()
    entry = document["nodes"][0]
    assert "sensitive_inputs" not in entry
    assert "sensitive" not in entry["resources"][0]
    assert "digest_changed" not in entry["resources"][0]["properties"][1]
    assert "sensitive" not in document["summary"]
    full = report().to_json()["nodes"][0]
    assert full["resources"][0]["properties"][0]["digest_changed"] is True
    assert "digest_changed" not in full["resources"][0]["properties"][1]


def test_an_edited_report_fails_its_digest() -> None:
    document = report().to_json()
    document["summary"]["risk"] = "low"
    assert not ImpactReport.from_json(document).verify_digest()


def test_the_policy_input_is_the_schemas_document() -> None:
    typed = report()
    given = policy_input(typed, title="t", kind="rollback")
    document = given.to_json()
    assert document["impact"] == typed.to_json()
    assert document["change"] == {
        "id": "chg-1", "environment": "production",
        "proposer": {"name": "planner-bot", "kind": "agent"},
        "changed_files": ["data/roles/web.yaml"], "changed_data_keys": ["app::mode"],
        "title": "t", "kind": "rollback"}
    document["resource_changes"] = resource_changes(typed)
    assert [g["nodes"] for g in document["resource_changes"]] == [["db1", "web1"]] * 2
    properties = POLICY_SCHEMA["properties"]
    jsonschema.Draft202012Validator(
        {**POLICY_SCHEMA, "properties": {**properties, "impact": SCHEMA}}).validate(document)
    assert "impact" not in given.to_json(with_impact=False)


def test_rendering_reads_the_model() -> None:
    text = render_text(report())
    assert "  ~ file[/etc/app.conf]  (profiles/app.yaml:3 → profiles/app.yaml:4)" in text
    assert "      mode: \"0644\" → \"0600\"" in text
    assert "Live prediction" in text
    assert text.rstrip().endswith(report().digest)
