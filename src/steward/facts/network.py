"""Host names, interfaces and addresses: sysfs, one netlink dump, /proc/net; no commands, no DNS.

Addresses come from a single ``RTM_GETADDR`` netlink dump, which (unlike ``SIOCGIFADDR``)
lists every address including secondaries, with its interface and prefix length. Where
netlink is refused (some sandboxes), IPv4 falls back to the per-interface ioctls (primary
address only) and IPv6 to /proc/net/if_inet6. The domain is read from /etc/hosts and
/etc/resolv.conf rather than resolved, so a broken resolver cannot stall a run.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from steward.facts._files import is_live, names_in, read_optional, read_text, under

_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_RTATTR = struct.Struct("=HH")  # length, type
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_FLAGS = 8

_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B

#: rtnetlink scopes (RT_SCOPE_*) and /proc/net/if_inet6 scopes (IPV6_ADDR_*) as words.
_NETLINK_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host"}
_INET6_SCOPES = {0x00: "global", 0x10: "host", 0x20: "link", 0x40: "site"}

_RTF_UP = 0x1
_RTF_REJECT = 0x200


class Address(NamedTuple):
    """One address on one interface, whichever source it came from."""

    ifindex: int
    family: int
    address: str
    prefixlen: int
    scope: str


def _align(length: int) -> int:
    return (length + 3) & ~3


def parse_netlink_addresses(data: bytes) -> list[Address]:
    """Decode an ``RTM_GETADDR`` dump (native byte order, as the kernel sends it)."""
    found: list[Address] = []
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _port = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size or offset + length > len(data) or kind == _NLMSG_DONE:
            break
        body = offset + _NLMSG.size
        if kind == _NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, body)
            if error:
                raise OSError(-error, os.strerror(-error))
        elif kind == _RTM_NEWADDR:
            family, prefixlen, _ifa_flags, scope, index = _IFADDRMSG.unpack_from(data, body)
            attributes: dict[int, bytes] = {}
            position, end = body + _IFADDRMSG.size, offset + length
            while position + _RTATTR.size <= end:
                attr_length, attr_type = _RTATTR.unpack_from(data, position)
                if attr_length < _RTATTR.size:
                    break
                attributes[attr_type] = data[position + _RTATTR.size : position + attr_length]
                position += _align(attr_length)
            # IFA_LOCAL is our own end of a point-to-point link; IFA_ADDRESS is the peer there.
            raw = attributes.get(_IFA_LOCAL) or attributes.get(_IFA_ADDRESS)
            if family in (socket.AF_INET, socket.AF_INET6) and raw:
                found.append(
                    Address(
                        ifindex=index,
                        family=family,
                        address=socket.inet_ntop(family, raw),
                        prefixlen=prefixlen,
                        scope=_NETLINK_SCOPES.get(scope, str(scope)),
                    )
                )
        offset += _align(length)
    return found


def _dump_finished(chunk: bytes) -> bool:
    offset = 0
    while offset + _NLMSG.size <= len(chunk):
        length, kind = _NLMSG.unpack_from(chunk, offset)[:2]
        if kind in (_NLMSG_DONE, _NLMSG_ERROR):
            return True
        if length < _NLMSG.size:
            return True
        offset += _align(length)
    return False


def netlink_dump() -> bytes:
    """Ask the kernel for every address of every interface; raises OSError when refused."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(1.0)
        sock.bind((0, 0))
        request = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        header = _NLMSG.pack(
            _NLMSG.size + len(request), _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
        )
        sock.send(header + request)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            chunks.append(chunk)
            if not chunk or _dump_finished(chunk):
                return b"".join(chunks)


def parse_if_inet6(text: str) -> list[tuple[str, Address]]:
    """/proc/net/if_inet6 rows: address, index, prefix, scope, flags, name (all hex)."""
    rows: list[tuple[str, Address]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6 or len(fields[0]) != 32:
            continue
        address = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[0]))
        scope = int(fields[3], 16)
        rows.append(
            (
                fields[5],
                Address(
                    ifindex=int(fields[1], 16),
                    family=socket.AF_INET6,
                    address=address,
                    prefixlen=int(fields[2], 16),
                    scope=_INET6_SCOPES.get(scope & 0xF0, "global"),
                ),
            )
        )
    return rows


def _ioctl_ipv4(name: str) -> Address | None:
    """Primary IPv4 address of one interface; None when it has none."""
    request = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            address = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)[20:24]
            netmask = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, request)[20:24]
        except OSError:
            return None
    prefixlen = bin(int.from_bytes(netmask, "big")).count("1")
    scope = "host" if address[0] == 127 else "global"
    return Address(0, socket.AF_INET, socket.inet_ntoa(address), prefixlen, scope)


def default_route_interface(route: str, ipv6_route: str = "") -> str | None:
    """The interface of the lowest-metric default route, IPv4 first (/proc/net/route)."""
    best: tuple[int, str] | None = None
    for line in route.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, destination, flags, metric, mask = (
            fields[0],
            fields[1],
            int(fields[3], 16),
            int(fields[6]),
            fields[7],
        )
        if (
            destination == "00000000"
            and mask == "00000000"
            and flags & _RTF_UP
            and (best is None or metric < best[0])
        ):
            best = (metric, iface)
    if best is not None:
        return best[1]
    for line in ipv6_route.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        flags, metric, iface = int(fields[8], 16), int(fields[5], 16), fields[9]
        if (
            fields[0] == "0" * 32
            and fields[1] == "00"
            and iface != "lo"
            and flags & _RTF_UP
            and not flags & _RTF_REJECT
            and (best is None or metric < best[0])
        ):
            best = (metric, iface)
    return best[1] if best is not None else None


def binding(address: Address) -> dict[str, str]:
    """Facter's binding: address, netmask and the network address of its prefix."""
    network = ipaddress.ip_interface(f"{address.address}/{address.prefixlen}")
    result = {
        "address": address.address,
        "netmask": str(network.netmask),
        "network": str(network.network.network_address),
    }
    if address.family == socket.AF_INET6:
        result["scope6"] = address.scope
    return result


def _summarise(entry: dict[str, Any]) -> None:
    """Copy the preferred binding of each family to the interface, as Facter does."""
    if entry.get("bindings"):
        first = entry["bindings"][0]
        entry.update(ip=first["address"], netmask=first["netmask"], network=first["network"])
    if entry.get("bindings6"):
        chosen = next(
            (b for b in entry["bindings6"] if b["scope6"] == "global"), entry["bindings6"][0]
        )
        entry.update(
            ip6=chosen["address"],
            netmask6=chosen["netmask"],
            network6=chosen["network"],
            scope6=chosen["scope6"],
        )


def build_interfaces(
    links: Iterable[tuple[str, int, str | None, int | None]],
    addresses: Sequence[tuple[str, Address]],
) -> dict[str, dict[str, Any]]:
    """Assemble ``networking.interfaces`` from (name, index, mac, mtu) and located addresses."""
    interfaces: dict[str, dict[str, Any]] = {}
    for name, _index, mac, mtu in links:
        entry: dict[str, Any] = {}
        if mac and mac.strip("0:"):
            entry["mac"] = mac
        if mtu is not None:
            entry["mtu"] = mtu
        interfaces[name] = entry
    for name, address in addresses:
        entry = interfaces.setdefault(name, {})
        key = "bindings" if address.family == socket.AF_INET else "bindings6"
        entry.setdefault(key, []).append(binding(address))
    for entry in interfaces.values():
        _summarise(entry)
    return interfaces


def read_links(root: str) -> list[tuple[str, int, str | None, int | None]]:
    """(name, ifindex, mac, mtu) for every interface in /sys/class/net."""
    links = []
    for name in names_in(root, "/sys/class/net"):
        if not under(root, f"/sys/class/net/{name}").is_dir():
            continue  # bonding_masters and other control files
        index = read_optional(root, f"/sys/class/net/{name}/ifindex")
        mtu = read_optional(root, f"/sys/class/net/{name}/mtu")
        links.append(
            (
                name,
                int(index) if index and index.isdigit() else 0,
                read_optional(root, f"/sys/class/net/{name}/address") or None,
                int(mtu) if mtu and mtu.isdigit() else None,
            )
        )
    return links


def _index_name(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:  # the interface went away between the dump and now
        return str(index)


def locate_addresses(
    root: str, links: Sequence[tuple[str, int, str | None, int | None]]
) -> list[tuple[str, Address]]:
    """Every address with its interface name: netlink when live, else ioctl + if_inet6."""
    names = {index: name for name, index, _mac, _mtu in links}
    if is_live(root):
        try:
            dumped = parse_netlink_addresses(netlink_dump())
        except OSError:
            dumped = None
        if dumped is not None:
            return [(names.get(a.ifindex) or _index_name(a.ifindex), a) for a in dumped]
    located: list[tuple[str, Address]] = []
    if is_live(root):
        for name, _index, _mac, _mtu in links:
            address = _ioctl_ipv4(name)
            if address is not None:
                located.append((name, address))
    inet6 = read_optional(root, "/proc/net/if_inet6")
    if inet6:
        located.extend(parse_if_inet6(inet6))
    return located


def domain_from_hosts(text: str, host: str) -> str | None:
    """The domain of ``host`` per /etc/hosts: a dotted name on the line that names the host."""
    for raw in text.splitlines():
        names = raw.partition("#")[0].split()[1:]
        if not any(n == host or n.split(".", 1)[0] == host for n in names):
            continue
        for name in names:
            if name.startswith(host + ".") and len(name) > len(host) + 1:
                return name[len(host) + 1 :]
    return None


def domain_from_resolv(text: str) -> str | None:
    """resolv.conf's ``domain``, else the first ``search`` entry (the resolver's own order)."""
    search: str | None = None
    for raw in text.splitlines():
        fields = raw.partition("#")[0].split()
        if len(fields) >= 2 and fields[0] == "domain":
            return fields[1].rstrip(".")
        if len(fields) >= 2 and fields[0] == "search" and search is None:
            search = fields[1].rstrip(".")
    return search


def host_names(root: str, raw_hostname: str) -> dict[str, str]:
    """hostname, fqdn and (when known) domain, the way Facter derives them but without DNS."""
    host, _, domain = raw_hostname.partition(".")
    if not domain:
        domain = (
            domain_from_hosts(read_optional(root, "/etc/hosts") or "", host)
            or domain_from_resolv(read_optional(root, "/etc/resolv.conf") or "")
            or ""
        )
    names = {"hostname": host, "fqdn": f"{host}.{domain}" if domain else host}
    if domain:
        names["domain"] = domain
    return names


def collect_networking(root: str) -> dict[str, Any]:
    names = host_names(root, socket.gethostname())
    links = read_links(root)
    interfaces = build_interfaces(links, locate_addresses(root, links))
    networking: dict[str, Any] = {**names, "interfaces": interfaces}
    try:
        route = read_text(root, "/proc/net/route")
    except OSError:
        route = ""
    primary = default_route_interface(route, read_optional(root, "/proc/net/ipv6_route") or "")
    if primary is None:
        primary = next((n for n, e in interfaces.items() if n != "lo" and e.get("bindings")), None)
    if primary is not None and primary in interfaces:
        networking["primary"] = primary
        for key in ("ip", "ip6", "mac", "mtu", "netmask", "netmask6", "network", "network6"):
            if key in interfaces[primary]:
                networking[key] = interfaces[primary][key]
    return {**names, "networking": networking}
