"""Machine specs, their validation, and the QEMU command lines built from them."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bungalow.errors import InvalidNameError, UserError
from bungalow.qemu.argv import (
    MIB,
    MachineSpec,
    NetConfig,
    NicSpec,
    PortForward,
    RunFiles,
    build_argv,
    kernel_cmdline,
    ram_id,
    random_mac,
)
from bungalow.qemu.disk import DIRECT_NATIVE, DiskIo

MAC = "0e:b6:00:11:22:33"


def spec(tmp_path: Path, **overrides: object) -> MachineSpec:
    values: dict[str, object] = {
        "name": "web-1",
        "cpus": 2,
        "memory": 512 * MIB,
        "profile": "micro",
        "disk": tmp_path / "disk.qcow2",
        "kernel": tmp_path / "vmlinuz",
        "initrd": tmp_path / "initrd.img",
        "accel": "tcg",
        "ports": (PortForward.parse("8080:80"), PortForward.parse("5353:53/udp")),
        "mac": MAC,
        "run_dir": tmp_path / "run",
        "disk_io": DIRECT_NATIVE,
        "tsc_khz": 2_100_000,
    }
    values.update(overrides)
    return MachineSpec(**values)  # type: ignore[arg-type]


# --- port forwards -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080:80", PortForward(8080, 80)),
        ("0.0.0.0:8080:80", PortForward(8080, 80, host_addr="0.0.0.0")),
        ("5353:53/udp", PortForward(5353, 53, protocol="udp")),
        (" 2222:22/TCP ", PortForward(2222, 22)),
        ("127.0.0.1:1:65535", PortForward(1, 65535)),
    ],
)
def test_port_forward_parses(text: str, expected: PortForward) -> None:
    assert PortForward.parse(text) == expected


@pytest.mark.parametrize("text", ["8080", "a:80", "8080:80:90:100", "8080-80", ":80", "8080:", ""])
def test_port_forward_rejects_bad_text(text: str) -> None:
    with pytest.raises(UserError, match=r"write HOST:GUEST"):
        PortForward.parse(text)


@pytest.mark.parametrize(
    ("text", "which"), [("0:80", "host"), ("70000:80", "host"), ("80:0", "guest")]
)
def test_port_forward_rejects_ports_out_of_range(text: str, which: str) -> None:
    with pytest.raises(UserError, match=f"The {which} port .* is outside 1-65535"):
        PortForward.parse(text)


def test_port_forward_rejects_bad_address_and_protocol() -> None:
    with pytest.raises(UserError, match="not an IPv4 address"):
        PortForward.parse("localhost:8080:80")
    with pytest.raises(UserError, match="not tcp or udp"):
        PortForward.parse("8080:80/sctp")


def test_port_forward_hostfwd_and_text() -> None:
    forward = PortForward.parse("0.0.0.0:5353:53/udp")
    assert forward.hostfwd() == "udp:0.0.0.0:5353-:53"
    assert str(forward) == "0.0.0.0:5353:53/udp"


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("disk", "my,disk.qcow2"),
        ("kernel", "vmlinuz=1"),
        ("initrd", "init rd.img"),
        ("run_dir", "run,dir"),
    ],
)
def test_paths_qemu_would_misread_are_refused(tmp_path: Path, field: str, bad: str) -> None:
    with pytest.raises(InvalidNameError, match="QEMU would misread"):
        spec(tmp_path, **{field: tmp_path / bad})
    assert list(tmp_path.iterdir()) == []  # refused before anything was created


def test_cdrom_path_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError):
        spec(tmp_path, profile="pc", kernel=None, initrd=None, cdrom=tmp_path / "a,b.iso")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Web_1"}, "name 'Web_1' is not valid"),
        ({"cpus": 0}, "at least 1 CPU"),
        ({"memory": 8 * MIB}, "at least 16M"),
        ({"memory": 300 * MIB + 1}, "whole number of MiB"),
        ({"profile": "arm"}, "profile 'arm' is not known"),
        ({"accel": "hvf"}, "accelerator 'hvf' is not known"),
        ({"kernel": None, "initrd": None}, "boots a kernel directly"),
        ({"cdrom": Path("/x.iso")}, "no CD-ROM drive"),
        ({"profile": "pc", "kernel": None}, "initrd needs a kernel"),
        ({"mac": "52:54:00:12:34"}, "not a unicast address"),
        ({"mac": "0f:b6:00:11:22:33"}, "not a unicast address"),
        ({"ports": (PortForward(80, 80), PortForward(80, 81))}, "forwarded twice"),
    ],
)
def test_bad_specs_are_refused(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        spec(tmp_path, **overrides)


def test_run_dir_too_long_for_a_socket(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="too long for a Unix socket path"):
        spec(tmp_path, run_dir=tmp_path / ("x" * 100))


def test_same_port_on_tcp_and_udp_is_fine(tmp_path: Path, qcow2: Path) -> None:
    both = spec(tmp_path, ports=(PortForward.parse("53:53"), PortForward.parse("53:53/udp")))
    argv = build_argv(both, "qemu-system-x86_64")
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev == "user,id=net0,hostfwd=tcp:127.0.0.1:53-:53,hostfwd=udp:127.0.0.1:53-:53"


# --- command lines ---------------------------------------------------------------------


@pytest.fixture
def qcow2(tmp_path: Path) -> Path:
    """The disk the specs name: build_argv reads its header to name the format."""
    return make_qcow2(tmp_path / "disk.qcow2")


def make_qcow2(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def test_micro_argv(tmp_path: Path, qcow2: Path) -> None:
    t = str(tmp_path)
    assert build_argv(spec(tmp_path), "/usr/bin/qemu-system-x86_64") == [
        "/usr/bin/qemu-system-x86_64",
        "-name", "guest=web-1,debug-threads=on",
        "-M", "microvm,acpi=on",
        "-accel", "tcg,thread=multi,tb-size=64",
        "-cpu", "max",
        "-smp", "2",
        "-m", "512M",
        "-nodefaults", "-no-user-config", "-display", "none",
        "-no-reboot",
        "-sandbox", "on,obsolete=deny,resourcecontrol=deny",
        "-daemonize", "-pidfile", f"{t}/run/qemu.pid",
        "-D", f"{t}/run/qemu.err",
        "-chardev", f"socket,id=qmp,path={t}/run/qmp.sock,server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev",
        f"socket,id=console,path={t}/run/console.sock,server=on,wait=off,"
        f"logfile={t}/run/console.log,logappend=on",
        "-serial", "chardev:console",
        "-kernel", f"{t}/vmlinuz",
        "-initrd", f"{t}/initrd.img",
        "-append",
        "console=ttyS0 quiet panic=-1 root=/dev/vda bungalow.hostname=web-1 "
        "bungalow.ip=10.0.2.15/24 bungalow.gw=10.0.2.2 tsc_early_khz=2100000 tsc=reliable",
        "-drive",
        f"file={t}/disk.qcow2,if=none,id=disk0,format=qcow2,cache=none,aio=native,discard=unmap,"
        "detect-zeroes=unmap,werror=enospc,rerror=report,file.auto-read-only=off",
        "-device", "virtio-blk-device,drive=disk0",
        "-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:5353-:53",
        "-device", f"virtio-net-device,netdev=net0,mac={MAC}",
        "-device", "virtio-serial-device,id=vser0",
        "-chardev", f"socket,id=agent,path={t}/run/agent.sock,server=on,wait=off",
        "-device", "virtserialport,bus=vser0.0,chardev=agent,name=org.bungalow.agent",
        "-device", "virtio-rng-device",
    ]  # fmt: skip


def test_pc_argv_boots_a_cdrom_with_firmware(tmp_path: Path, qcow2: Path) -> None:
    t = str(tmp_path)
    machine = spec(
        tmp_path,
        profile="pc",
        kernel=None,
        initrd=None,
        cdrom=tmp_path / "debian.iso",
        ports=(),
        agent=False,
        disk_io=DiskIo("writeback", "io_uring"),
    )
    argv = build_argv(machine, "qemu-system-x86_64")
    assert argv[argv.index("-M") + 1] == "q35"
    assert "-kernel" not in argv and "-append" not in argv
    assert "-bios" not in argv  # SeaBIOS, QEMU's default
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    assert devices == [
        "isa-debugcon,iobase=0x402,chardev=firmware",
        "virtio-blk-pci,drive=disk0,bootindex=1",
        "ide-cd,id=cdrom0,drive=cd0,bus=ide.0,bootindex=2",  # the disk first, then the CD
        f"virtio-net-pci,netdev=net0,mac={MAC},romfile=",
        "virtio-rng-pci",
    ]
    drives = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-drive"]
    assert drives == [
        f"file={t}/disk.qcow2,if=none,id=disk0,format=qcow2,cache=writeback,aio=io_uring,"
        "discard=unmap,detect-zeroes=unmap,werror=enospc,rerror=report,file.auto-read-only=off",
        f"file={t}/debian.iso,if=none,id=cd0,media=cdrom,readonly=on,format=raw",
    ]
    assert argv[argv.index("-netdev") + 1] == "user,id=net0"
    assert f"file,id=firmware,path={machine.run_dir}/firmware.log" in argv


def test_an_installer_has_a_cdrom_drive_with_its_tray_empty(tmp_path: Path, qcow2: Path) -> None:
    machine = spec(tmp_path, profile="pc", kernel=None, initrd=None, agent=False, cdrom_drive=True)
    argv = build_argv(machine, "qemu-system-x86_64")
    assert "if=none,id=cd0,media=cdrom,readonly=on" in argv
    assert "ide-cd,id=cdrom0,drive=cd0,bus=ide.0,bootindex=2" in argv


def test_only_a_guest_booting_on_its_own_reboots(tmp_path: Path, qcow2: Path) -> None:
    assert "-no-reboot" in build_argv(spec(tmp_path), "qemu-system-x86_64")
    machine = spec(tmp_path, profile="pc", kernel=None, initrd=None, agent=False, reboot=True)
    assert "-no-reboot" not in build_argv(machine, "qemu-system-x86_64")


def test_micro_has_no_cdrom_drive(tmp_path: Path, qcow2: Path) -> None:
    with pytest.raises(UserError, match="no CD-ROM drive"):
        spec(tmp_path, cdrom_drive=True)


def test_pc_argv_can_boot_a_kernel(tmp_path: Path, qcow2: Path) -> None:
    argv = build_argv(spec(tmp_path, profile="pc"), "qemu-system-x86_64")
    assert argv[argv.index("-kernel") + 1] == f"{tmp_path}/vmlinuz"
    assert "virtio-serial-pci,id=vser0" in argv


def test_a_confined_qemu_changes_root_and_user(tmp_path: Path, qcow2: Path) -> None:
    argv = build_argv(replace(spec(tmp_path), runas=(1900000005, 1900000005)), "qemu")
    assert argv[argv.index("-chroot") + 1] == f"{tmp_path}/run"
    assert argv[argv.index("-runas") + 1] == "1900000005:1900000005"
    assert "-runas" not in build_argv(spec(tmp_path), "qemu")


def test_kvm_uses_the_host_cpu_and_no_tsc_hint(tmp_path: Path, qcow2: Path) -> None:
    machine = spec(tmp_path, accel="kvm")
    argv = build_argv(machine, "qemu-system-x86_64")
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host"
    assert "tsc_early_khz" not in kernel_cmdline(machine)


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_qcow2(tmp_path / "rel" / "disk.qcow2")
    argv = build_argv(spec(Path("rel")), "qemu-system-x86_64")
    assert argv[argv.index("-pidfile") + 1] == f"{tmp_path}/rel/run/qemu.pid"
    assert argv[argv.index("-kernel") + 1] == f"{tmp_path}/rel/vmlinuz"


def test_kernel_cmdline(tmp_path: Path) -> None:
    assert kernel_cmdline(spec(tmp_path, tsc_khz=0, cmdline_extra=" debug ")) == (
        "console=ttyS0 quiet panic=-1 root=/dev/vda bungalow.hostname=web-1 "
        "bungalow.ip=10.0.2.15/24 bungalow.gw=10.0.2.2 debug"
    )


def test_tsc_hint_defaults_to_the_measured_rate(tmp_path: Path) -> None:
    from bungalow.qemu.accel import host_tsc_khz

    line = kernel_cmdline(spec(tmp_path, tsc_khz=None))
    rate = host_tsc_khz()
    assert (f"tsc_early_khz={rate}" in line) if rate else ("tsc_early_khz" not in line)


def test_run_files(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)
    assert [p.name for p in files.all()] == [
        "qmp.sock",
        "agent.sock",
        "console.sock",
        "console.log",
        "qemu.pid",
        "qemu.err",
    ]
    assert files.vnc == tmp_path / "vnc.sock"
    assert files.vnc in files.sockets()  # its path length is checked with the others


def test_random_mac_is_local_unicast_and_fresh() -> None:
    macs = {random_mac() for _ in range(100)}
    assert len(macs) == 100
    for mac in macs:
        assert re.fullmatch(r"0e:b6(:[0-9a-f]{2}){4}", mac)
        first = int(mac[:2], 16)
        assert first & 0b10 and not first & 0b01


def test_a_relayed_nic_reaches_the_user_network_through_a_hub(tmp_path: Path, qcow2: Path) -> None:
    t = str(tmp_path)
    argv = build_argv(spec(tmp_path, net_relay=True), "qemu-system-x86_64")
    first = argv.index("-netdev")
    assert argv[first : first + 12] == [
        "-netdev", f"stream,server=on,addr.type=unix,id=nic0,addr.path={t}/run/net-nic.sock",
        "-device", f"virtio-net-device,netdev=nic0,mac={MAC}",
        "-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:5353-:53",
        "-netdev", "hubport,id=hub0net,hubid=0,netdev=net0",
        "-netdev", f"stream,server=on,addr.type=unix,id=wan0,addr.path={t}/run/net-wan.sock",
        "-netdev", "hubport,id=hub0wan,hubid=0,netdev=wan0",
    ]  # fmt: skip
    assert RunFiles(tmp_path / "run").net_nic in RunFiles(tmp_path / "run").sockets()


# --- NICs on private networks --------------------------------------------------------


def test_nics_replace_the_user_network(tmp_path: Path, qcow2: Path) -> None:
    nics = (NicSpec(id="nic0", fd=7, mac=MAC), NicSpec(id="nic1", fd=9, mac="0e:b6:00:00:00:02"))
    argv = build_argv(spec(tmp_path, ports=(), nics=nics), "qemu")
    assert not any(arg.startswith("user,") for arg in argv)
    netdevs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-netdev"]
    assert netdevs == ["tap,id=nic0,fd=7", "tap,id=nic1,fd=9"]
    assert f"virtio-net-device,id=nic0,mac={MAC},netdev=nic0" in argv
    pc = build_argv(spec(tmp_path, ports=(), nics=nics[:1], profile="pc"), "qemu")
    assert f"virtio-net-pci,id=nic0,mac={MAC},romfile=,netdev=nic0" in pc


def test_a_converter_has_the_nics_without_backends(tmp_path: Path, qcow2: Path) -> None:
    nics = (NicSpec(id="nic0", fd=None, mac=MAC),)
    argv = build_argv(spec(tmp_path, ports=(), nics=nics), "qemu")
    assert "-netdev" not in argv
    assert f"virtio-net-device,id=nic0,mac={MAC}" in argv


def test_network_config_goes_on_the_kernel_command_line(tmp_path: Path) -> None:
    net = NetConfig(address="10.202.1.5/24", gateway="10.202.1.1", dns="10.202.1.1", search="lab")
    words = kernel_cmdline(spec(tmp_path, tsc_khz=0, net=net)).split()
    assert words[-4:] == [
        "bungalow.ip=10.202.1.5/24",
        "bungalow.gw=10.202.1.1",
        "bungalow.dns=10.202.1.1",
        "bungalow.search=lab",
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"net_relay": True}, "bandwidth limit"),
        ({"ports": (PortForward.parse("8080:80"),)}, "publishes ports"),
    ],
)
def test_nics_refuse_user_network_features(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    nics = (NicSpec(id="nic0", fd=7, mac=MAC),)
    with pytest.raises(UserError, match=message):
        spec(tmp_path, **{"ports": (), "nics": nics, **overrides})


def test_nic_spec_is_checked() -> None:
    with pytest.raises(ValueError, match="nic0-nic9"):
        NicSpec(id="eth0", fd=3, mac=MAC)
    with pytest.raises(UserError, match="unicast"):
        NicSpec(id="nic0", fd=3, mac="01:00:5e:00:00:01")


@pytest.mark.parametrize(
    ("profile", "device"), [("micro", "virtio-blk-device"), ("pc", "virtio-blk-pci")]
)
def test_a_cloud_init_seed_is_a_read_only_disk_after_the_root(
    tmp_path: Path, qcow2: Path, profile: str, device: str
) -> None:
    seed = tmp_path / "seed.iso"
    argv = build_argv(spec(tmp_path, disk=qcow2, profile=profile, seed=seed), "qemu-system-x86_64")
    drives = [argv[i + 1] for i, word in enumerate(argv) if word == "-drive"]
    assert drives[0].startswith(f"file={qcow2},")  # the root stays /dev/vda
    assert drives[1] == f"file={seed},if=none,id=seed0,format=raw,readonly=on"
    assert f"{device},drive=seed0" in argv


# --- the display ---------------------------------------------------------------------


def test_a_display_is_a_vga_and_a_password_vnc_server_on_a_socket(
    tmp_path: Path, qcow2: Path
) -> None:
    machine = spec(tmp_path, profile="pc", display=True)
    argv = build_argv(machine, "qemu-system-x86_64")
    assert argv[argv.index("-vnc") + 1] == f"unix:{tmp_path}/run/vnc.sock,password=on"
    assert "VGA" in [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    assert argv[argv.index("-display") + 1] == "none"  # no window: VNC is the only display
    # The boot on the screen, the serial console still /dev/console (the last one).
    assert kernel_cmdline(machine).startswith("console=tty0 console=ttyS0 ")
    plain = build_argv(spec(tmp_path, profile="pc"), "qemu-system-x86_64")
    assert "-vnc" not in plain and "VGA" not in plain
    assert kernel_cmdline(spec(tmp_path, profile="pc")).startswith("console=ttyS0 ")


def test_a_micro_vm_has_no_display(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="The micro profile has no display"):
        spec(tmp_path, display=True)


# --- architectures -------------------------------------------------------------------


def test_an_aarch64_guest_runs_on_the_virt_board(tmp_path: Path, qcow2: Path) -> None:
    machine = spec(tmp_path, arch="aarch64", memory_file=tmp_path / "ram", disk=qcow2)
    argv = build_argv(machine, "/usr/bin/qemu-system-aarch64")
    joined = " ".join(argv)
    assert argv[argv.index("-M") + 1].startswith("virt,gic-version=3,memory-backend=mach-virt.ram")
    assert argv[argv.index("-cpu") + 1] == "max,pauth-impdef=on"
    assert "virtio-blk-device,drive=disk0" in joined and "-pci" not in joined
    cmdline = kernel_cmdline(machine).split()
    assert "console=ttyAMA0" in cmdline
    assert not any(word.startswith("tsc") for word in cmdline)  # x86 only
    assert ram_id("micro", "aarch64") == "mach-virt.ram"


def test_an_i386_guest_runs_on_the_x86_machines(tmp_path: Path, qcow2: Path) -> None:
    for profile, ram in (("micro", "microvm.ram"), ("pc", "pc.ram")):
        machine = spec(tmp_path, arch="i386", profile=profile, disk=qcow2)
        x86 = spec(tmp_path, profile=profile, disk=qcow2)
        assert build_argv(machine, "qemu") == build_argv(x86, "qemu")
        assert ram_id(profile, "i386") == ram
    assert "console=ttyS0" in kernel_cmdline(spec(tmp_path, arch="i386")).split()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"profile": "pc"}, "aarch64 guest runs on QEMU's virt machine"),
        ({"accel": "kvm"}, "KVM runs only this host's own architecture, not aarch64"),
    ],
)
def test_what_an_aarch64_guest_cannot_have(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        spec(tmp_path, arch="aarch64", **overrides)


# --- memory --------------------------------------------------------------------------


def test_guest_ram_stays_mergeable_for_ksm(tmp_path: Path, qcow2: Path) -> None:
    """QEMU marks RAM MADV_MERGEABLE under mem-merge=on, its default, and a memory backend
    takes the machine's setting: nothing on any command line may turn it off."""
    for overrides in ({}, {"profile": "pc"}, {"memory_file": tmp_path / "ram"},
                      {"memory_file": tmp_path / "ram", "memory_shared": True}):  # fmt: skip
        joined = " ".join(build_argv(spec(tmp_path, disk=qcow2, **overrides), "qemu"))
        assert "merge=off" not in joined and "merge=false" not in joined
