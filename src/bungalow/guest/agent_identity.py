"""The guest's clock and identity, set by the host: the ``sync`` operation.

A VM started from a snapshot carries on from the moment the snapshot was
taken, so its wall clock is behind, and a clone would otherwise share the
identity of the machine it was copied from: its hostname, machine-id, the
kernel's random pool, its MAC address and, on a private network, its NICs'
addresses (``nics``). ``sync`` puts each right; the host
sends it after every start from a snapshot, after ``resume`` (clock only) and
once at first boot (machine-id).

Only the standard library: this runs inside the guest (Python 3.9+).
"""

from __future__ import annotations

import _socket  # socket itself would import enum and selectors: seconds of TCG time
import _thread
import binascii
import fcntl  # built into Debian's python3
import os
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: ioctl numbers from <linux/random.h> and <linux/sockios.h>.
RNDADDENTROPY = 0x40085203
RNDRESEEDCRNG = 0x5207
SIOCSIFHWADDR = 0x8924
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
ARPHRD_ETHER = 1
INTERFACE = "eth0"


def sync(message: dict[str, Any], root: str = "/") -> list[str]:
    """Apply what ``message`` carries; return the names of what was changed."""
    done = []
    if message.get("time") is not None:
        time.clock_settime(time.CLOCK_REALTIME, float(message["time"]))
        done.append("time")
    if message.get("hostname"):
        set_hostname(str(message["hostname"]), root)
        done.append("hostname")
    if message.get("machine_id"):
        if set_machine_id(str(message["machine_id"]), root) and under_systemd(root):
            renew_ssh_host_keys(root)
            done.append("ssh_host_keys")
        done.append("machine_id")
    if message.get("entropy"):
        add_entropy(binascii.a2b_base64(message["entropy"]))
        done.append("entropy")
    if message.get("mac"):
        set_mac(INTERFACE, str(message["mac"]))
        done.append("mac")
    for nic in message.get("nics") or ():
        done.append("nic " + configure_nic(nic, root))
    return done


def configure_nic(nic: dict[str, Any], root: str = "/") -> str:
    """Give a NIC on a private network its MAC and address (``ADDRESS/PREFIX``), and for
    the first one the default route, name server and search domain, with iproute2's ``ip``
    as the guest's /init does at boot; returns the interface's name. ``nic``: interface,
    mac, address[, gateway, dns, search (comma-separated), domain]; without an interface,
    the one with that MAC (a NIC plugged in while the guest runs, waited for up to 10 s),
    whose ``domain`` is added to resolv.conf's search line. ValueError for an
    interface the guest does not have or ``ip`` refusing."""
    interface = str(nic.get("interface") or _by_mac(str(nic["mac"])))
    if not os.path.exists(f"/sys/class/net/{interface}"):
        raise ValueError(f"the guest has no network interface {interface}")
    set_mac(interface, str(nic["mac"]))
    if under_systemd(root):
        # systemd-networkd owns a server guest's addresses, routes and (through resolved)
        # its name servers: a static address or resolv.conf would fight its DHCP lease and
        # resolved's per-NIC domains. It is asked for a lease under the new MAC instead
        # (dnsmasq pins the MAC to the address bungalow chose).
        _run("networkctl", "reconfigure", interface)
        return interface
    _ip("addr", "flush", "dev", interface)
    # replace, not add: idempotent when a sync is repeated (a recovered start).
    _ip("addr", "replace", str(nic["address"]), "dev", interface)
    _ip("link", "set", interface, "up")
    if nic.get("gateway"):
        _ip("route", "replace", "default", "via", str(nic["gateway"]), "dev", interface)
    resolv = os.path.join(root, "etc/resolv.conf")
    if nic.get("dns"):
        lines = "nameserver " + str(nic["dns"]) + "\n"
        if nic.get("search"):
            lines += "search " + str(nic["search"]).replace(",", " ") + "\n"
        _replace(resolv, lines)
    elif nic.get("domain"):
        add_search(resolv, str(nic["domain"]))
    return interface


def add_search(path: str, domain: str) -> None:
    """Append ``domain`` to the search line of the resolv.conf at ``path`` (made if it has
    none); nothing when it is there already or the file does not exist."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return
    for position, line in enumerate(lines):
        words = line.split()
        if words[:1] == ["search"]:
            if domain in words[1:]:
                return
            lines[position] = " ".join([*words, domain])
            break
    else:
        lines.append("search " + domain)
    _replace(path, "\n".join(lines) + "\n")


def _by_mac(mac: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for name in os.listdir("/sys/class/net"):
            try:
                with open(f"/sys/class/net/{name}/address") as handle:
                    if handle.read().strip() == mac:
                        return name
            except OSError:
                continue
        if time.monotonic() >= deadline:
            raise ValueError(f"no network interface with the MAC {mac} appeared in the guest")
        time.sleep(0.05)


def _ip(*args: str) -> None:
    _run("ip", *args)


def _run(program: str, *args: str) -> None:
    # posix_spawn, not fork: the agent has threads, and a forked child running Python
    # code can deadlock on a lock another thread held at the fork.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    pid = os.posix_spawnp(program, [program, *args], env)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status != 0:
        raise ValueError(program + " " + " ".join(args) + " failed with status " + str(status))


def set_hostname(name: str, root: str = "/") -> None:
    """The kernel's hostname, as the initramfs sets it at boot from the command line.

    /etc/hostname is left as the image has it, like on a freshly booted VM: only
    an init that reads it at boot would care (a micro image has none, and the
    write costs a clone about 0.1 s of emulated file-system code). systemd does
    read it, so under systemd a /etc/hostname that exists (cloud-init writes one)
    gets the new name too.
    """
    _socket.sethostname(name)
    etc_hostname = os.path.join(root, "etc/hostname")
    if under_systemd(root) and os.path.isfile(etc_hostname):
        _replace(etc_hostname, name + "\n")


def set_machine_id(machine_id: str, root: str = "/") -> bool:
    """Write ``machine_id`` to /etc/machine-id (and dbus's own copy); True if it changed."""
    if len(machine_id) != 32 or any(c not in "0123456789abcdef" for c in machine_id):
        raise ValueError(f"{machine_id!r} is not a machine-id (32 lowercase hex digits)")
    path = os.path.join(root, "etc/machine-id")
    try:
        with open(path) as current:
            if current.read().strip() == machine_id:
                return False
    except OSError:
        pass
    _replace(path, machine_id + "\n")
    dbus = os.path.join(root, "var/lib/dbus/machine-id")
    if os.path.isfile(dbus) and not os.path.islink(dbus):
        _replace(dbus, machine_id + "\n")
    return True


#: The host key types a server image makes and its sshd offers: Ed25519 and ECDSA,
#: which every OpenSSH since 6.5 (2014) speaks. Not RSA: under TCG its prime search
#: took most of the 30-46 s a first boot spent making keys on the development host.
HOST_KEY_TYPES = ("ed25519", "ecdsa")

#: A shell line making the host keys of HOST_KEY_TYPES that are missing: the image's
#: first-boot unit runs it, and the agent for a clone whose old keys it removed.
MAKE_HOST_KEYS = "; ".join(
    f"test -e /etc/ssh/ssh_host_{kind}_key || "
    f"ssh-keygen -q -N '' -t {kind} -f /etc/ssh/ssh_host_{kind}_key"
    for kind in HOST_KEY_TYPES
)


def under_systemd(root: str = "/") -> bool:
    """Whether systemd is the guest's init (sd_booted(3): /run/systemd/system exists)."""
    return os.path.isdir(os.path.join(root, "run/systemd/system"))


def renew_ssh_host_keys(root: str = "/") -> None:
    """Give a guest that took a new identity (a clone) SSH host keys of its own, and
    a journal under its new machine-id.

    The old keys go at once; new ones are made and sshd restarted in the
    background (a key pair costs a TCG guest about a second), so the host's
    ``sync`` is not held up. Nothing happens in a guest without sshd.
    """
    ssh = os.path.join(root, "etc/ssh")
    if not os.path.isdir(ssh):
        return
    for name in os.listdir(ssh):
        if name.startswith("ssh_host_") and ("_key" in name):
            os.unlink(os.path.join(ssh, name))
    if root != "/":
        return  # tests on the host: the files are all there is to it
    # journald keeps writing under the old machine-id's directory until it restarts.
    script = (
        "systemctl try-restart systemd-journald.service; "
        f"{{ {MAKE_HOST_KEYS}; }} && systemctl try-restart ssh.service"
    )
    pid = os.posix_spawnp("sh", ["sh", "-c", script], dict(os.environ))
    _thread.start_new_thread(os.waitpid, (pid, 0))


def add_entropy(data: bytes) -> None:
    """Mix host randomness into the kernel's pool, credit it, and reseed the CRNG.

    A clone's kernel starts with its template's random state: without a reseed
    two clones would hand out the same "random" bytes.
    """
    fd = os.open("/dev/random", os.O_WRONLY | os.O_CLOEXEC)
    try:
        request = struct.pack("ii", len(data) * 8, len(data)) + data
        fcntl.ioctl(fd, RNDADDENTROPY, request)
        fcntl.ioctl(fd, RNDRESEEDCRNG)
    finally:
        os.close(fd)


def set_mac(interface: str, mac: str) -> None:
    """Give ``interface`` a new MAC address, taking it down and up if the driver insists."""
    raw = bytes(int(part, 16) for part in mac.split(":"))
    if len(raw) != 6:
        raise ValueError(f"{mac!r} is not a MAC address")
    if not os.path.exists(f"/sys/class/net/{interface}"):
        return
    name = interface.encode()
    request = struct.pack("16sH6s8x", name, ARPHRD_ETHER, raw)
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        try:
            fcntl.ioctl(sock.fileno(), SIOCSIFHWADDR, request)
            return
        except OSError as exc:
            if exc.errno != 16:  # EBUSY: this driver changes the address only when down
                raise
        current = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH", name, 0))
        flags = struct.unpack("16sH", current[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", name, flags & ~IFF_UP))
        try:
            fcntl.ioctl(sock.fileno(), SIOCSIFHWADDR, request)
        finally:
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", name, flags))
    finally:
        sock.close()


def _replace(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader sees old or new."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        return
    temporary = path + ".bungalow-new"
    with open(temporary, "w") as handle:
        handle.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
