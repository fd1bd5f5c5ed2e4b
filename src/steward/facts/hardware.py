"""Memory, processors, disks and virtualisation, read from /proc and /sys without commands."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from steward.facts._files import names_in, read_optional, read_text, under

#: Block devices that are not disks: loop-mounted images, RAM disks, compressed swap.
_NOT_DISKS = ("loop", "ram", "zram")

#: Fields naming the processor model on different architectures, in order of preference.
_MODEL_FIELDS = ("model name", "Processor", "cpu model", "uarch", "cpu")

#: DMI vendor/product substrings mapped to Facter's ``virtual`` values.
_DMI_HYPERVISORS = (
    ("VMware", "vmware"),
    ("VirtualBox", "virtualbox"),
    ("innotek", "virtualbox"),
    ("Parallels", "parallels"),
    ("Amazon EC2", "kvm"),
    ("KVM", "kvm"),
    ("QEMU", "kvm"),
    ("Google", "gce"),
    ("OpenStack", "openstack"),
    ("Bochs", "bochs"),
    ("Xen", "xenhvm"),
    ("Virtual Machine", "hyperv"),
)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo in bytes (the kernel prints kB, meaning KiB)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if not fields or not fields[0].isdigit():
            continue
        factor = 1024 if len(fields) > 1 and fields[1] == "kB" else 1
        values[key.strip()] = int(fields[0]) * factor
    return values


def _usage(total: int, available: int) -> dict[str, Any]:
    used = max(total - available, 0)
    capacity = f"{used / total * 100:.2f}%" if total else "0.00%"
    return {
        "total_bytes": total,
        "available_bytes": available,
        "used_bytes": used,
        "capacity": capacity,
    }


def memory_facts(info: Mapping[str, int]) -> dict[str, Any]:
    total = info["MemTotal"]
    # MemAvailable appeared in Linux 3.14; before that, free + reclaimable caches is the estimate.
    available = info.get("MemAvailable")
    if available is None:
        available = info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0)
    return {
        "system": _usage(total, available),
        "swap": _usage(info.get("SwapTotal", 0), info.get("SwapFree", 0)),
    }


def collect_memory(root: str) -> dict[str, Any]:
    return {"memory": memory_facts(parse_meminfo(read_text(root, "/proc/meminfo")))}


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one mapping per blank-line separated block."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _speed(mhz: float) -> str:
    """Facter's rendering: ``2.60 GHz`` or ``800.00 MHz``."""
    return f"{mhz / 1000:.2f} GHz" if mhz >= 1000 else f"{mhz:.2f} MHz"


def processors_facts(
    blocks: Sequence[Mapping[str, str]],
    *,
    cpu_count: int | None,
    package_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """Count logical CPUs, sockets and cores; ``package_ids`` covers arches without physical id.

    ARM kernels print no ``physical id``, so the caller passes the sysfs topology ids instead.
    """
    cpus = [b for b in blocks if "processor" in b]
    count = len(cpus) or cpu_count or 0
    physical = {b["physical id"] for b in cpus if "physical id" in b} or set(package_ids)
    models: list[str] = []
    for block in cpus:
        model = next((block[f] for f in _MODEL_FIELDS if block.get(f)), None)
        if model is not None:
            models.append(model)
    facts: dict[str, Any] = {
        "count": count,
        "physicalcount": len(physical) or (1 if count else 0),
        "models": models,
    }
    cores = {(b.get("physical id"), b["core id"]) for b in cpus if "core id" in b}
    if cores:
        facts["cores"] = len(cores)
        facts["threads"] = max(count // len(cores), 1)
    for block in cpus:
        mhz = block.get("cpu MHz")
        if mhz:
            try:
                facts["speed"] = _speed(float(mhz))
            except ValueError:
                continue
            break
    return facts


def _package_ids(root: str) -> list[str]:
    ids = []
    for name in names_in(root, "/sys/devices/system/cpu"):
        if name.startswith("cpu") and name[3:].isdigit():
            value = read_optional(
                root, f"/sys/devices/system/cpu/{name}/topology/physical_package_id"
            )
            if value is not None:
                ids.append(value)
    return ids


def collect_processors(root: str) -> dict[str, Any]:
    blocks = parse_cpuinfo(read_text(root, "/proc/cpuinfo"))
    package_ids = [] if any("physical id" in b for b in blocks) else _package_ids(root)
    return {
        "processors": processors_facts(blocks, cpu_count=os.cpu_count(), package_ids=package_ids)
    }


def disk_facts(root: str) -> dict[str, Any]:
    """One entry per block device in /sys/block, sizes in bytes (sysfs counts 512-byte sectors)."""
    disks: dict[str, Any] = {}
    for name in names_in(root, "/sys/block"):
        if name.startswith(_NOT_DISKS):
            continue
        base = f"/sys/block/{name}"
        size = read_optional(root, f"{base}/size")
        if size is None or not size.isdigit():
            continue
        disk: dict[str, Any] = {"size_bytes": int(size) * 512}
        for key, attribute in (
            ("model", "device/model"),
            ("vendor", "device/vendor"),
            ("serial", "device/serial"),
            ("serial", "serial"),
        ):
            value = read_optional(root, f"{base}/{attribute}")
            if value and key not in disk:
                disk[key] = value
        rotational = read_optional(root, f"{base}/queue/rotational")
        if rotational in ("0", "1"):
            disk["type"] = "hdd" if rotational == "1" else "ssd"
        removable = read_optional(root, f"{base}/removable")
        if removable in ("0", "1"):
            disk["removable"] = removable == "1"
        disks[name] = disk
    return disks


def collect_disks(root: str) -> dict[str, Any]:
    return {"disks": disk_facts(root)}


def _first_line(root: str, path: str) -> str | None:
    try:
        return read_text(root, path).splitlines()[0]
    except (OSError, IndexError):
        return None


def detect_container(root: str) -> str | None:
    """Containers first: they share the host's cpuinfo and DMI, which would name the VM."""
    if under(root, "/.dockerenv").exists():
        return "docker"
    if under(root, "/run/.containerenv").exists():
        return "podman"
    try:
        environ = under(root, "/proc/1/environ").read_bytes().split(b"\0")
    except OSError:  # only root may read it, and some sandboxes forbid even that
        environ = []
    for entry in environ:
        if entry.startswith(b"container="):
            value = entry.partition(b"=")[2].decode("ascii", "replace")
            return {"systemd-nspawn": "systemd_nspawn", "lxc-libvirt": "lxc"}.get(value, value)
    cgroup = read_optional(root, "/proc/1/cgroup") or ""
    for marker, name in (("docker", "docker"), ("kubepods", "kubernetes"), ("lxc", "lxc")):
        if marker in cgroup:
            return name
    return None


def detect_hypervisor(root: str, cpu_flags: str) -> str | None:
    """DMI names the hypervisor on x86; Xen PV guests have /sys/hypervisor; else the cpu flag."""
    dmi = " ".join(
        value
        for value in (
            read_optional(root, "/sys/class/dmi/id/sys_vendor"),
            read_optional(root, "/sys/class/dmi/id/product_name"),
            read_optional(root, "/sys/class/dmi/id/bios_vendor"),
        )
        if value
    )
    for marker, name in _DMI_HYPERVISORS:
        if marker in dmi:
            return name
    if read_optional(root, "/sys/hypervisor/type") == "xen":
        return "xenu"
    if "hypervisor" in cpu_flags.split():
        # No DMI (Firecracker, cloud-hypervisor): virtio devices still say it is KVM-based.
        return "kvm" if names_in(root, "/sys/bus/virtio/devices") else "unknown"
    return None


def collect_virtual(root: str) -> dict[str, Any]:
    flags = ""
    try:
        for line in read_text(root, "/proc/cpuinfo").splitlines():
            if line.startswith("flags"):
                flags = line.partition(":")[2]
                break
    except OSError:
        pass
    virtual = detect_container(root) or detect_hypervisor(root, flags) or "physical"
    return {"virtual": virtual, "is_virtual": virtual != "physical"}
