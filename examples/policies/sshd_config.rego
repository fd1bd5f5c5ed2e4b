# Any change to the SSH daemon's configuration (/etc/ssh/sshd_config or a file under
# /etc/ssh/sshd_config.d) needs security approval: soft-mandatory, overridable by "security".
package steward.policies.sshd_config

import rego.v1

deny contains msg if {
	some change in input.resource_changes
	touches_sshd(change)
	msg := concat("", [
		change.resource, " (", change.action, ") changes the SSH daemon configuration on ",
		nodes_text(change.nodes), "; it needs security approval",
	])
}

touches_sshd(change) if sshd_path(change.title)

touches_sshd(change) if {
	some prop in change.properties
	prop.name == "path"
	some path in [prop.before, prop.after]
	sshd_path(path)
}

sshd_path(path) if path in {"/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d"}

sshd_path(path) if startswith(path, "/etc/ssh/sshd_config.d/")

nodes_text(nodes) := concat(", ", nodes) if count(nodes) <= 5

nodes_text(nodes) := concat("", [
	concat(", ", array.slice(nodes, 0, 5)),
	sprintf(" and %d more", [count(nodes) - 5]),
]) if count(nodes) > 5
