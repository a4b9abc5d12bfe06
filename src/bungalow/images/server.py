"""What turns a Debian root file system into a ``server`` image: systemd's files and hygiene.

A server image boots bungalow's initramfs like a micro one, which then switches
root to ``/sbin/init`` (systemd) instead of to the agent (images/initramfs_init.sh,
``bungalow.init=systemd``). Inside, systemd starts the agent the way Incus starts
its own and Debian starts qemu-guest-agent: a udev rule on the agent's
virtio-serial port pulls in ``bungalow-agent.service``, which has no default
dependencies, so exec, cp and shell work long before ``multi-user.target``
(anchors-next.md 2.1).

Hygiene (anchors-next.md 2.2, 2.3): the image carries no identity of its own.
``/etc/machine-id`` is empty (systemd takes ``systemd.machine_id=`` from the
kernel command line on first boot), dbus's copy is a link to it, there are no
SSH host keys (a unit makes them before sshd starts; cloud-init remakes them
for each new instance-id), no ``/usr/sbin/policy-rc.d`` left to block services
from starting, and no ``/etc/hostname`` (the kernel's name, set by /init from
the command line, is kept). systemd-networkd asks DHCP on every ethernet NIC
with a client identifier taken from the MAC, so a clone with a new MAC gets its
own lease; cloud-init looks only for a NoCloud seed, so it never waits for a
metadata server that is not there.
"""

from __future__ import annotations

import os
from pathlib import Path

from bungalow.errors import ImageError
from bungalow.guest.agent_identity import HOST_KEY_TYPES, MAKE_HOST_KEYS
from bungalow.images._tools import run_tool
from bungalow.images.recipes import Recipe

AGENT_UNIT = "bungalow-agent.service"
KEYGEN_UNIT = "bungalow-ssh-keygen.service"

#: Started by udev (below) when its port appears, and also wanted by sysinit.target:
#: udev's coldplug comes 10-20 s into a TCG boot, and the port exists from the
#: initramfs on (virtio_console is loaded there), so the agent answers that much sooner.
AGENT_SERVICE = """\
[Unit]
Description=bungalow guest agent
Documentation=https://github.com/bungalow/bungalow/blob/main/docs/architecture.md
DefaultDependencies=no
Before=multi-user.target cloud-init-local.service

[Service]
ExecStart=/usr/bin/python3 -S /run/bungalow/agent.py --systemd
Restart=on-failure
RestartSec=1s
# The commands run through the agent live in its control group: a restart of the
# agent must not end them, only the agent itself.
KillMode=process
OOMScoreAdjust=-900

[Install]
WantedBy=sysinit.target
"""

#: The Incus / qemu-guest-agent pattern: the port's device unit wants the service.
AGENT_UDEV_RULE = """\
SUBSYSTEM=="virtio-ports", ATTR{name}=="org.bungalow.agent", \
SYMLINK+="virtio-ports/org.bungalow.agent", \
TAG+="systemd", ENV{SYSTEMD_WANTS}+="bungalow-agent.service"
"""

SSHD_HOST_KEYS = "".join(f"HostKey /etc/ssh/ssh_host_{kind}_key\n" for kind in HOST_KEY_TYPES)

#: Debian's ssh.service runs ``sshd -t`` first, which fails without host keys.
KEYGEN_SERVICE = f"""\
[Unit]
Description=SSH host keys, made on first boot (bungalow server image)
After=cloud-init.service
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/bin/sh -c "{MAKE_HOST_KEYS}"

[Install]
RequiredBy=ssh.service
"""

NETWORK_FILE = """\
# Every ethernet NIC asks DHCP: QEMU's user-mode network, or a bungalow network's
# dnsmasq. The client id is the MAC, so a clone (new MAC, same disk) gets its own lease.
# UseDomains: the network's domain (dnsmasq's --domain) becomes this link's search and
# routing domain, so systemd-resolved asks each network's names of that network's
# dnsmasq, not only the first NIC's.
[Match]
Name=eth* en*

[Network]
DHCP=yes

[DHCPv4]
ClientIdentifier=mac
UseDomains=yes
"""

CLOUD_CFG = """\
# bungalow: look only for a seed on a local volume (NoCloud's cidata, or a config
# drive), never for a metadata server on the network. With no seed, ds-identify
# finds nothing and cloud-init stays off for that boot; a list of one source (plus
# None) would be taken as found without looking, and cloud-init would run its four
# stages on every boot for nothing (about 80 s of a TCG guest's CPU).
datasource_list: [NoCloud, ConfigDrive, None]
# The network is systemd-networkd's (/etc/systemd/network/80-bungalow.network).
network:
  config: disabled
# The image has no locales but C.UTF-8; cc_locale would fail on en_US.UTF-8.
locale: false
# The host key types sshd is configured for (sshd_config.d/50-bungalow-host-keys.conf).
ssh_genkeytypes: [ed25519, ecdsa]
"""

#: ``bungalow console`` is a root shell on the serial console, as ``exec`` is.
GETTY_AUTOLOGIN = """\
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
"""

FSTAB = """\
# The root is mounted by bungalow's initramfs with these options; this line is for
# systemd-remount-fs and for people reading it.
/dev/vda / ext4 rw,noatime,discard,errors=remount-ro 0 0
"""

#: (path in the guest, text) of every file a server image gets.
FILES: tuple[tuple[str, str], ...] = (
    (f"etc/systemd/system/{AGENT_UNIT}", AGENT_SERVICE),
    ("etc/udev/rules.d/60-bungalow-agent.rules", AGENT_UDEV_RULE),
    (f"etc/systemd/system/{KEYGEN_UNIT}", KEYGEN_SERVICE),
    ("etc/systemd/network/80-bungalow.network", NETWORK_FILE),
    ("etc/cloud/cloud.cfg.d/90-bungalow.cfg", CLOUD_CFG),
    ("etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf", GETTY_AUTOLOGIN),
    ("etc/fstab", FSTAB),
    ("etc/ssh/sshd_config.d/50-bungalow-host-keys.conf", SSHD_HOST_KEYS),
)

#: Units enabled in the image, by ``systemctl enable`` inside it.
ENABLED_UNITS = (
    AGENT_UNIT,
    "systemd-networkd.service",
    "systemd-resolved.service",
    KEYGEN_UNIT,
)
#: Units disabled: e2fsprogs' scrubbing of LVM snapshots (there is no LVM), which
#: costs a TCG guest 20 s at every boot.
DISABLED_UNITS = ("e2scrub_reap.service", "e2scrub_all.timer")

#: Files that would give every VM of the image the same identity, or block services.
REMOVED = (
    "usr/sbin/policy-rc.d",
    "etc/hostname",
    "var/lib/dbus/machine-id",
)
SSH_HOST_KEYS = "etc/ssh/ssh_host_*"


def configure_server(recipe: Recipe, rootfs: Path) -> None:
    """Write the server files into ``rootfs``, enable its units and strip its identity.

    Raises ImageError when a step inside the new system fails (``systemctl``
    is run in it through chroot, as on a machine without a running systemd).
    """
    if not (rootfs / "sbin/init").exists() and not (rootfs / "usr/sbin/init").exists():
        raise ImageError(f"The {recipe.name} system has no /sbin/init; systemd-sysv is missing.")
    for relative, text in FILES:
        write_file(rootfs / relative, text)
    run_tool(
        ["chroot", rootfs, "systemctl", "enable", "--quiet", *ENABLED_UNITS],
        what="enabling the server's units",
        workdir=rootfs.parent,
    )
    present = [unit for unit in DISABLED_UNITS if _unit_file(rootfs, unit) is not None]
    run_tool(
        ["chroot", rootfs, "systemctl", "disable", "--quiet", *present],
        what="disabling units a VM has no use for",
        workdir=rootfs.parent,
    )
    # systemd-resolved answers on 127.0.0.53 with what DHCP gave networkd.
    resolv = rootfs / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    (rootfs / "var/log/journal").mkdir(parents=True, exist_ok=True)  # a journal kept on disk
    strip_identity(rootfs)


def strip_identity(rootfs: Path) -> None:
    """Empty the machine-id, link dbus's to it, remove host keys and what blocks services."""
    for relative in REMOVED:
        (rootfs / relative).unlink(missing_ok=True)
    for key in rootfs.glob(SSH_HOST_KEYS):
        key.unlink()
    machine_id = rootfs / "etc/machine-id"
    machine_id.unlink(missing_ok=True)
    machine_id.write_text("")
    machine_id.chmod(0o444)
    dbus = rootfs / "var/lib/dbus/machine-id"
    if dbus.parent.is_dir():
        dbus.symlink_to("/etc/machine-id")


def hygiene_problems(rootfs: Path) -> list[str]:
    """What in ``rootfs`` would leak one VM's identity into another's, one phrase each.

    Empty when the image is clean; the builder refuses to keep an image that is not.
    """
    problems: list[str] = []
    machine_id = rootfs / "etc/machine-id"
    if not machine_id.is_file() or machine_id.read_text().strip():
        problems.append("/etc/machine-id is not an empty file")
    dbus = rootfs / "var/lib/dbus/machine-id"
    if dbus.is_file() and not dbus.is_symlink():
        problems.append("/var/lib/dbus/machine-id is a file of its own")
    if (rootfs / "usr/sbin/policy-rc.d").exists():
        problems.append("/usr/sbin/policy-rc.d is there")
    keys = sorted(path.name for path in rootfs.glob(SSH_HOST_KEYS))
    if keys:
        problems.append(f"SSH host keys are there ({', '.join(keys)})")
    return problems


def check_hygiene(recipe: Recipe, rootfs: Path) -> None:
    """ImageError naming what is wrong when ``rootfs`` is not clean (:func:`hygiene_problems`)."""
    problems = hygiene_problems(rootfs)
    if problems:
        raise ImageError(
            f"The {recipe.name} image is not clean: {'; '.join(problems)}; this is a bug in "
            "bungalow's image builder."
        )


def write_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (a guest file) readable by all, never through a symlink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.write_text(text)
    os.chmod(path, 0o644)


def _unit_file(rootfs: Path, unit: str) -> Path | None:
    """Where a package installed ``unit`` (merged /usr or not), if it did."""
    for directory in ("usr/lib/systemd/system", "lib/systemd/system"):
        path = rootfs / directory / unit
        if path.is_file():
            return path
    return None
