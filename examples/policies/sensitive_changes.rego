# A change that alters a resource carrying a secret, or a template or static file that one
# renders, is approved by people: every approval it needs must come from a human, and
# no agent's approval is accepted (require_human; see docs/policy.md). Nothing is denied: the
# change goes ahead once humans approve it.
#
# Reads input.resource_changes (entries marked sensitive: the resource carries a secret on
# either side, whichever property changed) and input.impact.summary.sensitive.inputs (changed
# files feeding a secret-bearing resource, even where the rendering is the same today).
package steward.policies.sensitive_changes

import rego.v1

require_human contains msg if {
	some change in input.resource_changes
	change.sensitive == true
	msg := concat("", [
		change.resource, " carries a secret and would be ", done[change.action],
		" on ", nodes_text(change.nodes),
	])
}

require_human contains msg if {
	some file in input.impact.summary.sensitive.inputs
	msg := concat("", [file, " feeds a resource that carries a secret"])
}

done := {"add": "added", "remove": "removed", "modify": "modified"}

nodes_text(nodes) := concat(", ", nodes) if count(nodes) <= 5

nodes_text(nodes) := concat("", [
	concat(", ", array.slice(nodes, 0, 5)),
	sprintf(" and %d more", [count(nodes) - 5]),
]) if count(nodes) > 5
