package steward.policies.sensitive_changes

import rego.v1

pgpass(sensitive) := {
	"resource": "file[/var/lib/postgresql/.pgpass]", "type": "file",
	"title": "/var/lib/postgresql/.pgpass", "action": "modify", "sensitive": sensitive,
	"properties": [{"name": "content", "before": "[redacted]", "after": "[redacted]",
		"sensitive": true, "digest_changed": true}],
	"nodes": ["db1", "db2"],
}

no_inputs := {"summary": {"sensitive": {"nodes": 0, "resources": 0, "values": 0, "inputs": []}}}

test_requires_a_human_for_a_changed_secret_resource if {
	require_human == {"file[/var/lib/postgresql/.pgpass] carries a secret and would be modified on db1, db2"} with input.resource_changes as [pgpass(true)]
		with input.impact as no_inputs
}

test_requires_a_human_for_a_changed_template_feeding_one if {
	require_human == {"templates/postgresql/pgpass.j2 feeds a resource that carries a secret"} with input.resource_changes as []
		with input.impact as {"summary": {"sensitive": {"inputs": ["templates/postgresql/pgpass.j2"]}}}
}

test_names_at_most_five_nodes if {
	change := object.union(pgpass(true), {"action": "add", "nodes": ["a", "b", "c", "d", "e", "f", "g"]})
	require_human == {"file[/var/lib/postgresql/.pgpass] carries a secret and would be added on a, b, c, d, e and 2 more"} with input.resource_changes as [change]
		with input.impact as no_inputs
}

test_nothing_sensitive_needs_nothing if {
	count(require_human) == 0 with input.resource_changes as [pgpass(false)]
		with input.impact as no_inputs
}

test_a_report_without_sensitive_marks_needs_nothing if {
	count(require_human) == 0 with input.resource_changes as [object.remove(pgpass(true), ["sensitive"])]
		with input.impact as {"summary": {}}
}
