# Agent-authored changes may not touch the rules that govern them: anything under a
# `policies/` or `.steward/` directory, and any rbac.yaml or approvals.yaml.
# Reads input.change (proposer and changed_files).
package steward.policies.agent_protected_files

import rego.v1

deny contains msg if {
	input.change.proposer.kind == "agent"
	some file in input.change.changed_files
	protected(file)
	msg := concat("", [
		"agent ", input.change.proposer.name, " may not change ", file,
		": policies and access rules are changed by people",
	])
}

protected(file) if {
	some dir in array.slice(split(file, "/"), 0, count(split(file, "/")) - 1)
	dir in {"policies", ".steward"}
}

protected(file) if {
	parts := split(file, "/")
	parts[count(parts) - 1] in {"rbac.yaml", "approvals.yaml"}
}
