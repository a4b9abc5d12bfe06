"""``bungalow ssh NAME [-- CMD...]``: the system's ssh to a VM, through bungalowd and its agent.

No port is forwarded and no address is needed: ssh's ProxyCommand is
``bungalow _ssh-proxy NAME``, which relays its stdin and stdout through an
interactive exec (the exec websocket) to a small relay in the guest
(:mod:`bungalow.guest.sshrelay`) connected to the guest's 127.0.0.1:22. So it
works alike for user-mode NAT and private networks.

Before ssh runs, one exec (:mod:`bungalow.guest.sshprobe`) asks the guest whether
it has an SSH server, whether it listens, and for its host keys, which go into
``<data dir>/ssh/known_hosts`` under ``HostKeyAlias=NAME``: host key checking
stays on, with the keys learnt through the daemon (rewritten on every call, so a
VM name used again by a new VM is no reason for a warning).

Keys: when one of the user's keys (``-i``'s, ssh-agent's, ``~/.ssh/id_*``, bungalow's
own) is among the VM's, ssh simply offers them. Otherwise the user's default public key
(``~/.ssh/id_ed25519.pub``...), or a key pair bungalow makes in ``<data dir>/ssh/``
when the user has none, is installed first, as ``gcloud compute ssh`` does.

A command after ``--`` is run as ssh runs it when it is one argument (a shell command
line), and quoted word by word when it is several, so ``-- sh -c 'exit 7'`` runs that argv.

Exit status: ssh's (the remote command's, 255 for ssh's own errors); 1 with one
sentence when the VM does not run or has no SSH server.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

import bungalow.guest.sshprobe as sshprobe_module
import bungalow.guest.sshrelay as sshrelay_module
from bungalow.cli.common import VmName, client
from bungalow.cli.output import warn
from bungalow.client.http import Client
from bungalow.errors import InvalidStateError, UserError
from bungalow.provision.sshkeys import fingerprint, parse_public_key

#: Key files looked for in ~/.ssh, in the order ssh itself tries them.
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
#: Seconds to wait for a guest's sshd to listen (a server image may still be booting).
LISTEN_WAIT = 90.0


def ssh(
    name: VmName,
    command: Annotated[
        list[str] | None, typer.Argument(help="Command to run instead of a shell, after --.")
    ] = None,
    user: Annotated[str, typer.Option("--user", "-l", help="Log in as this user.")] = "root",
    identity: Annotated[
        Path | None,
        typer.Option("--identity", "-i", help="Private key file for ssh to offer first."),
    ] = None,
) -> None:
    """Log in to a running VM with ssh (its SSH server, through bungalowd: no port needed).

    Exit status: ssh's, which is the remote command's (255: ssh itself failed);
    1 when the VM does not run or has no SSH server.
    """
    api = client()
    vm = api.get_vm(name)
    if vm["state"] != "running":
        raise InvalidStateError(
            f"The VM {name} is {vm['state']}, not running; start it with "
            f"`bungalow start {name}` first."
        )
    host_keys = _wait_for_sshd(api, name)
    data = api.data.root / "ssh"
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    known_hosts = data / "known_hosts"
    _write_known_hosts(known_hosts, name, host_keys)
    identities = [identity] if identity is not None else []
    own = _ensure_key(api, name, vm["ssh_keys"], data, identity)
    identities += [own] if own is not None else []
    raise typer.Exit(_run_ssh(name, user, command or [], known_hosts, identities))


def ssh_proxy(name: VmName) -> None:
    """Relay stdin and stdout to the VM's port 22 (ssh's ProxyCommand; not for people)."""
    from bungalow.cli.terminal import interactive_exec

    argv = ["python3", "-S", "-c", _source(sshrelay_module), "127.0.0.1", "22"]
    raise typer.Exit(interactive_exec(client(), name, argv, tty=False))


def _source(module: Any) -> str:
    return Path(module.__file__).read_text()


def _probe(api: Client, name: str) -> dict[str, Any]:
    out = bytearray()
    status = None
    argv = ["python3", "-S", "-c", _source(sshprobe_module)]
    for event in api.exec_events(name, argv, timeout=30):
        if event["type"] == "exit":
            status = event.get("exit_code")
        elif event["type"] == "stdout":
            out += event["data"]
    answer = sshprobe_module.parse(out.decode(errors="replace")) if status == 0 else {}
    if not answer:
        raise UserError(
            f"Could not ask the VM {name} about its SSH server (python3 in the guest "
            f"answered with status {status}); use `bungalow shell {name}` instead."
        )
    return answer


def _wait_for_sshd(api: Client, name: str) -> list[str]:
    """The guest's host keys once its sshd listens; UserError if it has none or never does."""
    deadline = time.monotonic() + LISTEN_WAIT
    said = False
    while True:
        answer = _probe(api, name)
        if not answer.get("sshd"):
            raise UserError(
                f"The VM {name} runs no SSH server; use `bungalow shell {name}`, or launch "
                "from debian-12-server."
            )
        if answer.get("listening") and answer.get("host_keys"):
            return [str(key) for key in answer["host_keys"]]
        if time.monotonic() > deadline:
            raise UserError(
                f"The SSH server of {name} does not listen on port 22 after "
                f"{LISTEN_WAIT:.0f} s; see `bungalow exec {name} -- systemctl status ssh`."
            )
        if not said:
            warn(f"waiting for the SSH server of {name} to start")
            said = True
        time.sleep(1.0)


def _write_known_hosts(path: Path, name: str, host_keys: list[str]) -> None:
    """Put ``name``'s keys in ``path`` in place of any it had; other VMs' lines stay."""
    lines = []
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line.split(" ", 1)[0] != name]
    for key in host_keys:
        kind, blob = key.split()[:2]
        lines.append(f"{name} {kind} {blob}")
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(line + "\n" for line in lines))
    os.replace(temporary, path)


def _ensure_key(
    api: Client, name: str, installed: list[str], data: Path, identity: Path | None
) -> Path | None:
    """The identity file bungalow made to offer besides ssh's own, if any; when none of the
    user's keys (``-i``, ssh-agent's, ~/.ssh's defaults, bungalow's) is among the VM's,
    the user's default public key (or bungalow's, made if need be) is installed first."""
    own = data / "id_ed25519"
    mine = _users_keys(identity, own)
    if not {fingerprint(key) for key in mine} & set(installed):
        default = next(iter(_default_keys()), None)
        if default is None:
            if not own.exists():
                _make_key_pair(own)
            default = parse_public_key(own.with_suffix(".pub").read_text().strip())
        api.add_ssh_keys(name, [default])
        warn(f"installed the SSH key {fingerprint(default)} for root in {name}")
    return own if own.exists() else None


def _default_keys() -> list[str]:
    """The public keys of ~/.ssh's default key pairs, in the order ssh tries them."""
    keys = []
    for stem in DEFAULT_KEYS:
        public = Path.home() / ".ssh" / f"{stem}.pub"
        if public.exists() and public.with_suffix("").exists():
            with contextlib.suppress(UserError, OSError):
                keys.append(parse_public_key(public.read_text().strip()))
    return keys


def _users_keys(identity: Path | None, own: Path) -> list[str]:
    """Every public key ssh may offer: -i's, ssh-agent's, the defaults, bungalow's own."""
    files = [own.with_suffix(".pub")]
    if identity is not None:
        files.append(Path(f"{identity}.pub"))
    keys = _default_keys()
    for public in files:
        with contextlib.suppress(UserError, OSError):
            keys.append(parse_public_key(public.read_text().strip()))
    adder = shutil.which("ssh-add")
    if adder and os.environ.get("SSH_AUTH_SOCK"):
        listed = subprocess.run(
            [adder, "-L"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        for line in listed.splitlines():
            with contextlib.suppress(UserError):
                keys.append(parse_public_key(line))
    return keys


def _make_key_pair(path: Path) -> None:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise UserError("ssh-keygen is not installed; install the Debian package openssh-client.")
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bungalow", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _run_ssh(
    name: str, user: str, command: list[str], known_hosts: Path, identities: list[Path]
) -> int:
    program = shutil.which("ssh")
    if program is None:
        raise UserError("ssh is not installed; install the Debian package openssh-client.")
    proxy = shlex.join([sys.executable, "-m", "bungalow.cli.main", "_ssh-proxy", name])
    argv = [
        program,
        "-o", f"ProxyCommand={proxy}",
        "-o", f"HostKeyAlias={name}",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "CheckHostIP=no",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip
    for identity in identities:
        argv += ["-i", str(identity)]
    argv += [f"{user}@{name}"]
    if command:
        argv += ["--", remote_command(command)]
    return subprocess.run(argv, check=False).returncode


def remote_command(command: list[str]) -> str:
    """The command line the guest's shell runs: one argument as it is (a shell command, as
    ssh takes it: ``-- 'ls | wc -l'``), several quoted each (the exact argv, as exec takes
    it: ``-- sh -c 'exit 7'``, which plain ssh would join into ``sh -c exit 7``)."""
    return command[0] if len(command) == 1 else shlex.join(command)


def register(app: typer.Typer) -> None:
    app.command()(ssh)
    app.command("_ssh-proxy", hidden=True)(ssh_proxy)
