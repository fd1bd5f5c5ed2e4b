package steward.policies.blast_radius

import rego.v1

radius(percent, nodes) := {"summary": {"blast_radius": {"nodes": nodes, "resources": nodes, "percent": percent}}}

test_denies_over_limit_in_production if {
	deny == {"the change affects 33.34% of production (3334 nodes); the limit there is 25%"} with input.impact as radius(33.34, 3334) with input.environment as "production"
}

test_allows_at_limit_in_production if {
	count(deny) == 0 with input.impact as radius(25, 2500) with input.environment as "production"
}

test_staging_limit_is_sixty if {
	count(deny) == 0 with input.impact as radius(59.9, 599) with input.environment as "staging"
	count(deny) == 1 with input.impact as radius(60.1, 601) with input.environment as "staging"
}

test_development_is_unlimited if {
	count(deny) == 0 with input.impact as radius(100, 40) with input.environment as "development"
}

test_rollbacks_are_exempt if {
	count(deny) == 0 with input.environment as "production"
		with input.change as {"kind": "rollback"}
		with input.impact as {"summary": {"blast_radius": {"percent": 100, "nodes": 40}}}
}
