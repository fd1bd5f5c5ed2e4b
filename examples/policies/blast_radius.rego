# Limits how much of an environment one change may touch: at most 25% of production's nodes,
# 60% of staging's; development (and any environment not listed) is unlimited.
# A rollback (input.change.kind "rollback") restores a state that was already approved, so
# it is exempt: a limit must never stand in the way of undoing a change.
# Reads input.environment, input.change.kind and input.impact.summary.blast_radius.
package steward.policies.blast_radius

import rego.v1

limits := {"production": 25, "staging": 60}

deny contains msg if {
	not input.change.kind == "rollback"
	limit := limits[input.environment]
	radius := input.impact.summary.blast_radius
	radius.percent > limit
	msg := concat("", [
		"the change affects ", sprintf("%v%%", [radius.percent]), " of ", input.environment,
		" (", sprintf("%v", [radius.nodes]), " nodes); the limit there is ",
		sprintf("%v%%", [limit]),
	])
}
