"""Addresses from a captured netlink dump and /proc/net files; names from hosts/resolv.conf."""

from __future__ import annotations

import socket
import struct
import sys

import pytest

from steward.facts import network
from steward.facts.network import (
    Address,
    build_interfaces,
    collect_networking,
    default_route_interface,
    domain_from_hosts,
    domain_from_resolv,
    host_names,
    parse_if_inet6,
    parse_netlink_addresses,
)
from tests.facts.conftest import MakeRoot, fixture_text

little_endian_only = pytest.mark.skipif(
    sys.byteorder != "little", reason="the netlink dump was captured on a little-endian host"
)


def _netlink_fixture() -> bytes:
    return bytes.fromhex("".join(fixture_text("netlink-getaddr.hex").split()))


@little_endian_only
def test_netlink_dump_lists_every_address_with_its_interface_index() -> None:
    addresses = parse_netlink_addresses(_netlink_fixture())
    assert addresses == [
        Address(1, socket.AF_INET, "127.0.0.1", 8, "host"),
        Address(4, socket.AF_INET, "192.0.2.2", 24, "global"),
        Address(1, socket.AF_INET6, "::1", 128, "host"),
        Address(4, socket.AF_INET6, "fd00::2", 64, "global"),
        Address(4, socket.AF_INET6, "fe80::fc:ff:fe00:1", 64, "link"),
    ]


@little_endian_only
def test_netlink_error_message_raises_oserror() -> None:
    header = struct.pack("=IHHII", 36, 2, 0, 1, 0)
    error = struct.pack("=i", -1) + struct.pack("=IHHII", 20, 22, 0x301, 1, 0)
    with pytest.raises(PermissionError):
        parse_netlink_addresses(header + error)


def test_truncated_netlink_data_stops_without_error() -> None:
    data = _netlink_fixture()
    assert len(parse_netlink_addresses(data[:100])) == 1


def test_if_inet6_rows() -> None:
    rows = parse_if_inet6(fixture_text("if_inet6"))
    assert rows == [
        ("lo", Address(1, socket.AF_INET6, "::1", 128, "host")),
        ("eth0", Address(4, socket.AF_INET6, "fe80::fc:ff:fe00:1", 64, "link")),
        ("eth0", Address(4, socket.AF_INET6, "fd00::2", 64, "global")),
    ]


def test_default_route_prefers_ipv4_and_lowest_metric() -> None:
    assert default_route_interface(fixture_text("route")) == "eth0"
    route = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
        "eth1\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "eth1\t0000000A\t00000000\t0001\t0\t0\t100\t000000FF\t0\t0\t0\n"
    )
    assert default_route_interface(route) == "eth1"


def test_ipv6_only_host_takes_the_ipv6_default_route() -> None:
    header_only = fixture_text("route").splitlines()[0] + "\n"
    assert default_route_interface(header_only, fixture_text("ipv6_route")) == "eth0"
    assert default_route_interface(header_only, "") is None


def test_domain_from_hosts_takes_the_dotted_name_on_the_hosts_line() -> None:
    hosts = (
        "127.0.0.1\tlocalhost\n"
        "127.0.1.1\tweb1.example.com web1  # set by the installer\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    assert domain_from_hosts(hosts, "web1") == "example.com"
    assert domain_from_hosts("10.0.0.5 db1 db1.corp.example.net\n", "db1") == "corp.example.net"
    assert domain_from_hosts(hosts, "other") is None
    assert domain_from_hosts("127.0.0.1 localhost\n127.0.0.1 vm\n", "vm") is None


def test_domain_from_resolv_prefers_domain_over_search() -> None:
    assert domain_from_resolv("search b.example a.example\ndomain c.example.\n") == "c.example"
    assert domain_from_resolv("# generated\nsearch ec2.internal\nnameserver 10.0.0.2\n") == (
        "ec2.internal"
    )
    assert domain_from_resolv("nameserver 10.255.255.53\n") is None


def test_host_names(make_root: MakeRoot) -> None:
    root = make_root({"/etc/hosts": "127.0.1.1 web1.example.com web1\n"})
    assert host_names(root, "web1") == {
        "hostname": "web1",
        "fqdn": "web1.example.com",
        "domain": "example.com",
    }
    assert host_names(root, "db2.lab.example.org") == {
        "hostname": "db2",
        "fqdn": "db2.lab.example.org",
        "domain": "lab.example.org",
    }
    assert host_names(make_root({}), "lonely") == {"hostname": "lonely", "fqdn": "lonely"}


def test_build_interfaces_summarises_the_preferred_bindings() -> None:
    links = [("eth0", 2, "02:fc:00:00:00:01", 1400), ("lo", 1, "00:00:00:00:00:00", 65536)]
    addresses = [
        ("eth0", Address(2, socket.AF_INET, "192.0.2.2", 24, "global")),
        ("eth0", Address(2, socket.AF_INET, "192.0.2.9", 24, "global")),
        ("eth0", Address(2, socket.AF_INET6, "fe80::fc:ff:fe00:1", 64, "link")),
        ("eth0", Address(2, socket.AF_INET6, "fd00::2", 64, "global")),
        ("lo", Address(1, socket.AF_INET, "127.0.0.1", 8, "host")),
    ]
    interfaces = build_interfaces(links, addresses)
    eth0 = interfaces["eth0"]
    assert [b["address"] for b in eth0["bindings"]] == ["192.0.2.2", "192.0.2.9"]
    assert eth0["ip"] == "192.0.2.2"
    assert eth0["netmask"] == "255.255.255.0"
    assert eth0["network"] == "192.0.2.0"
    assert eth0["ip6"] == "fd00::2"
    assert eth0["network6"] == "fd00::"
    assert eth0["netmask6"] == "ffff:ffff:ffff:ffff::"
    assert eth0["scope6"] == "global"
    assert eth0["mac"] == "02:fc:00:00:00:01"
    assert eth0["mtu"] == 1400
    assert "mac" not in interfaces["lo"]  # the all-zero loopback address is no MAC
    assert interfaces["lo"]["network"] == "127.0.0.0"


def test_collect_networking_from_a_captured_tree(
    make_root: MakeRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off the live system only file sources apply: IPv6 from if_inet6, no IPv4 queries."""
    files = {
        "/proc/net/route": fixture_text("route"),
        "/proc/net/if_inet6": fixture_text("if_inet6"),
        "/etc/resolv.conf": "search example.test\n",
    }
    for name, index, mac, mtu in (
        ("eth0", 4, "02:fc:00:00:00:01", 1400),
        ("lo", 1, "00:00:00:00:00:00", 65536),
    ):
        files[f"/sys/class/net/{name}/ifindex"] = f"{index}\n"
        files[f"/sys/class/net/{name}/address"] = f"{mac}\n"
        files[f"/sys/class/net/{name}/mtu"] = f"{mtu}\n"
    files["/sys/class/net/bonding_masters"] = "\n"
    monkeypatch.setattr(socket, "gethostname", lambda: "web1")
    facts = collect_networking(make_root(files))
    assert facts["fqdn"] == "web1.example.test"
    net = facts["networking"]
    assert sorted(net["interfaces"]) == ["eth0", "lo"]
    assert net["primary"] == "eth0"
    assert net["ip6"] == "fd00::2"
    assert net["mac"] == "02:fc:00:00:00:01"
    assert net["mtu"] == 1400
    assert "ip" not in net
    assert net["domain"] == "example.test"


def test_live_host_netlink_and_ioctl_agree_on_primary_ipv4() -> None:
    """The ioctl fallback must find the same primary addresses as the netlink dump."""
    try:
        dumped = parse_netlink_addresses(network.netlink_dump())
    except OSError as exc:  # pragma: no cover - sandboxes that refuse netlink
        pytest.skip(f"netlink refused here: {exc}")
    links = network.read_links("/")
    names = {index: name for name, index, _mac, _mtu in links}
    first_ipv4: dict[str, str] = {}
    for address in dumped:
        if address.family == socket.AF_INET:
            first_ipv4.setdefault(names[address.ifindex], address.address)
    for name, _index, _mac, _mtu in links:
        found = network._ioctl_ipv4(name)
        assert (found.address if found else None) == first_ipv4.get(name)
