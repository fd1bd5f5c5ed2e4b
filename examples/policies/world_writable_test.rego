package steward.policies.world_writable

import rego.v1

mode_change(title, mode) := {
	"resource": concat("", ["file[", title, "]"]), "type": "file", "title": title,
	"action": "modify", "nodes": ["web1", "web2"],
	"properties": [{"name": "mode", "before": "0644", "after": mode, "sensitive": false}],
}

test_denies_0777 if {
	deny == {"file[/etc/app.conf] would get mode 0777 (world-writable under /etc) on web1, web2"} with input.resource_changes as [mode_change("/etc/app.conf", "0777")]
}

test_denies_other_write_bit_only if {
	count(deny) == 1 with input.resource_changes as [mode_change("/etc/app.conf", "0602")]
}

test_denies_new_directory if {
	count(deny) == 1 with input.resource_changes as [{
		"resource": "directory[/etc/app.d]", "type": "directory", "title": "/etc/app.d",
		"action": "add", "nodes": ["db1"],
		"properties": [{"name": "mode", "before": null, "after": "1777", "sensitive": false}],
	}]
}

test_allows_0644 if {
	count(deny) == 0 with input.resource_changes as [mode_change("/etc/app.conf", "0644")]
}

test_allows_world_writable_outside_etc if {
	count(deny) == 0 with input.resource_changes as [mode_change("/tmp/scratch", "0777")]
}

test_allows_etcetera_prefix if {
	count(deny) == 0 with input.resource_changes as [mode_change("/etcetera/x", "0777")]
}

test_lists_at_most_five_nodes if {
	change := object.union(mode_change("/etc/x", "0666"), {"nodes": ["n1", "n2", "n3", "n4", "n5", "n6", "n7"]})
	deny == {"file[/etc/x] would get mode 0666 (world-writable under /etc) on n1, n2, n3, n4, n5 and 2 more"} with input.resource_changes as [change]
}
