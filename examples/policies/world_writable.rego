# No file or directory under /etc may become world-writable (mode with the o+w bit).
#
# Reads input.resource_changes: every added or modified file/directory whose mode the
# change sets. One message per distinct change, naming the resource, the mode and the nodes.
package steward.policies.world_writable

import rego.v1

deny contains msg if {
	some change in input.resource_changes
	change.type in {"file", "directory"}
	change.action in {"add", "modify"}
	under_etc(change)
	some prop in change.properties
	prop.name == "mode"
	world_writable(prop.after)
	msg := concat("", [
		change.resource, " would get mode ", prop.after,
		" (world-writable under /etc) on ", nodes_text(change.nodes),
	])
}

under_etc(change) if etc_path(change.title)

under_etc(change) if {
	some prop in change.properties
	prop.name == "path"
	etc_path(prop.after)
}

etc_path(path) if path == "/etc"

etc_path(path) if startswith(path, "/etc/")

# An octal mode string ("0777", "666", "1777") whose last digit has the write bit (2).
world_writable(mode) if {
	is_string(mode)
	regex.match(`^[0-7]{3,4}$`, mode)
	substring(mode, count(mode) - 1, 1) in {"2", "3", "6", "7"}
}

nodes_text(nodes) := concat(", ", nodes) if count(nodes) <= 5

nodes_text(nodes) := concat("", [
	concat(", ", array.slice(nodes, 0, 5)),
	sprintf(" and %d more", [count(nodes) - 5]),
]) if count(nodes) > 5
