package steward.policies.sshd_config

import rego.v1

change(type, title, action) := {
	"resource": concat("", [type, "[", title, "]"]), "type": type, "title": title,
	"action": action, "nodes": ["bastion1"],
	"properties": [{"name": "content", "before": "a", "after": "b", "sensitive": false}],
}

test_denies_sshd_config_content if {
	deny == {"file[/etc/ssh/sshd_config] (modify) changes the SSH daemon configuration on bastion1; it needs security approval"} with input.resource_changes as [change("file", "/etc/ssh/sshd_config", "modify")]
}

test_denies_drop_in_file if {
	count(deny) == 1 with input.resource_changes as [change("file", "/etc/ssh/sshd_config.d/10-steward.conf", "add")]
}

test_denies_removal if {
	count(deny) == 1 with input.resource_changes as [change("file", "/etc/ssh/sshd_config", "remove")]
}

test_denies_line_resource_by_path if {
	count(deny) == 1 with input.resource_changes as [{
		"resource": "line[permit-root]", "type": "line", "title": "permit-root",
		"action": "add", "nodes": ["web1"],
		"properties": [{"name": "path", "before": null, "after": "/etc/ssh/sshd_config", "sensitive": false}],
	}]
}

test_allows_ssh_client_config if {
	count(deny) == 0 with input.resource_changes as [change("file", "/etc/ssh/ssh_config", "modify")]
}

test_allows_lookalike_name if {
	count(deny) == 0 with input.resource_changes as [change("file", "/etc/ssh/sshd_config.bak", "modify")]
}
