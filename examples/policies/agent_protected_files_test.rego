package steward.policies.agent_protected_files

import rego.v1

by_agent(files) := {"proposer": {"name": "planner-bot", "kind": "agent"}, "changed_files": files}

by_human(files) := {"proposer": {"name": "alice", "kind": "human"}, "changed_files": files}

test_denies_agent_editing_policies if {
	deny == {"agent planner-bot may not change policies/sshd.rego: policies and access rules are changed by people"} with input.change as by_agent(["data/common.yaml", "policies/sshd.rego"])
}

test_denies_agent_editing_access_rules if {
	count(deny) == 3 with input.change as by_agent(["rbac.yaml", "config/approvals.yaml", ".steward/config.json"])
}

test_allows_agent_editing_desired_state if {
	count(deny) == 0 with input.change as by_agent(["data/roles/web.yaml", "profiles/policies_doc.yaml", "templates/rbac.yaml.j2"])
}

test_allows_human_editing_policies if {
	count(deny) == 0 with input.change as by_human(["policies/sshd.rego", "rbac.yaml"])
}
