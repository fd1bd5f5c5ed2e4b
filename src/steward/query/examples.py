"""The example queries of PuppetDB's documentation that Steward answers and is measured on.

One list for the tests (same results on SQLite and PostgreSQL), the latency benchmark and
anything that teaches PQL by example.
"""

from __future__ import annotations

REFERENCE_EXAMPLES: tuple[str, ...] = (
    'nodes[certname] { certname ~ "^web" }',
    'inventory[certname] { facts.operatingsystem = "CentOS" and resources { type = "Service" '
    'and title = "httpd" } }',
    'nodes { resources { type = "Class" and title = "Profile::Remote_mgmt" } }',
    "inventory[certname, facts.os.family, facts.puppetversion] { certname in nodes[certname] "
    '{ latest_report_status = "failed" } }',
    "reports[certname, receive_time] { latest_report? = true and ! code_id = "
    "'urn:puppet:code-id:1:519e…;production' }",
    'facts[name, count(value)] { certname ~ "^web.*" group by name }',
    'reports[count(), to_string(receive_time, "DAY")] { group by to_string(receive_time, '
    '"DAY") }',
    'reports { certname ~ "web.*" order by receive_time desc, certname desc limit 10 }',
    'facts { [certname, name] in fact_contents[certname, name] { value ~ "a" } }',
)
