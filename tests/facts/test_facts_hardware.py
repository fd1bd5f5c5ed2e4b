"""Memory, processors, disks and virtualisation against captured /proc and /sys contents."""

from __future__ import annotations

import pytest

from steward.facts.hardware import (
    collect_processors,
    collect_virtual,
    disk_facts,
    memory_facts,
    parse_cpuinfo,
    parse_meminfo,
    processors_facts,
)
from tests.facts.conftest import MakeRoot, fixture_text


def test_meminfo_of_a_current_kernel() -> None:
    info = parse_meminfo(fixture_text("meminfo-debian12-kvm"))
    assert info["MemTotal"] == 24684096 * 1024
    assert info["HugePages_Total"] == 0  # a count, not kB
    facts = memory_facts(info)
    system = facts["system"]
    assert system["total_bytes"] == 24684096 * 1024
    assert system["available_bytes"] == 24000424 * 1024
    assert system["used_bytes"] == system["total_bytes"] - system["available_bytes"]
    assert system["capacity"] == "2.77%"
    assert facts["swap"] == {
        "total_bytes": 0,
        "available_bytes": 0,
        "used_bytes": 0,
        "capacity": "0.00%",
    }


def test_meminfo_before_memavailable_estimates_from_free_and_caches() -> None:
    facts = memory_facts(parse_meminfo(fixture_text("meminfo-centos6")))
    assert facts["system"]["available_bytes"] == (137104 + 166972 + 1250548) * 1024
    assert facts["swap"]["used_bytes"] == (4128764 - 4119204) * 1024


def test_cpuinfo_of_a_two_vcpu_epyc_guest() -> None:
    facts = processors_facts(parse_cpuinfo(fixture_text("cpuinfo-epyc-kvm")), cpu_count=2)
    assert facts == {
        "count": 2,
        "physicalcount": 1,
        "models": ["AMD EPYC", "AMD EPYC"],
        "cores": 2,
        "threads": 1,
        "speed": "2.60 GHz",
    }


def test_cpuinfo_of_a_dual_socket_xeon_counts_sockets_cores_and_threads() -> None:
    facts = processors_facts(parse_cpuinfo(fixture_text("cpuinfo-xeon-2socket")), cpu_count=4)
    assert facts["count"] == 4
    assert facts["physicalcount"] == 2
    assert facts["cores"] == 2
    assert facts["threads"] == 2
    assert facts["models"] == ["Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"] * 4
    assert facts["speed"] == "800.06 MHz"


def test_arm_cpuinfo_takes_sockets_from_sysfs_topology(make_root: MakeRoot) -> None:
    files = {"/proc/cpuinfo": fixture_text("cpuinfo-graviton2")}
    for cpu in (0, 1):
        files[f"/sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id"] = "0\n"
    files["/sys/devices/system/cpu/online"] = "0-1\n"
    facts = collect_processors(make_root(files))["processors"]
    assert facts["count"] == 2
    assert facts["physicalcount"] == 1
    assert facts["models"] == []
    assert "speed" not in facts
    assert "cores" not in facts


def test_disks_come_from_sys_block_skipping_loop_and_zram(make_root: MakeRoot) -> None:
    root = make_root(
        {
            "/sys/block/vda/size": "536870912\n",
            "/sys/block/vda/serial": "overlayblk\n",
            "/sys/block/vda/queue/rotational": "1\n",
            "/sys/block/vda/removable": "0\n",
            "/sys/block/nvme0n1/size": "1000215216\n",
            "/sys/block/nvme0n1/device/model": "Samsung SSD 980 PRO 500GB               \n",
            "/sys/block/nvme0n1/device/serial": "S5GXNF0R123456\n",
            "/sys/block/nvme0n1/queue/rotational": "0\n",
            "/sys/block/loop0/size": "0\n",
            "/sys/block/zram0/size": "8388608\n",
        }
    )
    assert disk_facts(root) == {
        "nvme0n1": {
            "size_bytes": 1000215216 * 512,
            "model": "Samsung SSD 980 PRO 500GB",
            "serial": "S5GXNF0R123456",
            "type": "ssd",
        },
        "vda": {
            "size_bytes": 536870912 * 512,
            "serial": "overlayblk",
            "type": "hdd",
            "removable": False,
        },
    }


_KVM_FLAGS = "processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n"
_METAL_FLAGS = "processor\t: 0\nflags\t\t: fpu vme lahf_lm\n"


@pytest.mark.parametrize(
    ("files", "virtual"),
    [
        ({"/proc/cpuinfo": _METAL_FLAGS}, "physical"),
        ({"/proc/cpuinfo": _KVM_FLAGS, "/.dockerenv": ""}, "docker"),
        ({"/proc/cpuinfo": _KVM_FLAGS, "/run/.containerenv": ""}, "podman"),
        ({"/proc/1/environ": "PATH=/bin\0container=lxc\0"}, "lxc"),
        ({"/proc/1/cgroup": "0::/kubepods/besteffort/pod1234/abcd\n"}, "kubernetes"),
        (
            {
                "/proc/cpuinfo": _KVM_FLAGS,
                "/sys/class/dmi/id/sys_vendor": "QEMU\n",
                "/sys/class/dmi/id/product_name": "Standard PC (Q35 + ICH9, 2009)\n",
            },
            "kvm",
        ),
        (
            {
                "/proc/cpuinfo": _KVM_FLAGS,
                "/sys/class/dmi/id/sys_vendor": "VMware, Inc.\n",
                "/sys/class/dmi/id/product_name": "VMware Virtual Platform\n",
            },
            "vmware",
        ),
        (
            {
                "/proc/cpuinfo": _KVM_FLAGS,
                "/sys/class/dmi/id/sys_vendor": "Microsoft Corporation\n",
                "/sys/class/dmi/id/product_name": "Virtual Machine\n",
            },
            "hyperv",
        ),
        ({"/proc/cpuinfo": _METAL_FLAGS, "/sys/hypervisor/type": "xen\n"}, "xenu"),
        (
            {"/proc/cpuinfo": _KVM_FLAGS, "/sys/bus/virtio/devices/virtio0/vendor": "0x1af4"},
            "kvm",
        ),
        ({"/proc/cpuinfo": _KVM_FLAGS}, "unknown"),
    ],
)
def test_virtual_detection(make_root: MakeRoot, files: dict[str, str], virtual: str) -> None:
    facts = collect_virtual(make_root(files))
    assert facts == {"virtual": virtual, "is_virtual": virtual != "physical"}
