"""Turning QEMU's start-up complaints into one sentence a user can act on.

QEMU prints ``qemu-system-x86_64: -netdev user,...: Could not set up host
forwarding rule 'tcp:127.0.0.1:8080-:80'``: the option it echoes is ours, not the
user's, so it is cut; the rest is kept in QEMU's own words, and the cases users
cause every day get a sentence saying what to do.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable

_PREFIX_RE = re.compile(r"^[\w./-]*qemu[\w.-]*: ")
_OPTION_ECHO_RE = re.compile(r"^-[\w-]+ \S+: ")
_HOSTFWD_RE = re.compile(r"host forwarding rule '(?P<proto>\w+):(?P<addr>[^:]*):(?P<port>\d+)-")
_MISSING_FILE_RE = re.compile(
    r"(?P<path>/[^\s'\"“”:,]+).*(?P<why>No such file or directory|Permission denied)"
)


def qemu_message(stderr_text: str) -> str | None:
    """The last error QEMU printed, without its program name or our option; None if silent.

    An error continues on lines without the program prefix (``Failed to get "write"
    lock`` is followed by ``Is another process using the image [...]?``); they are
    joined into one.
    """
    errors: list[str] = []
    in_error = False
    for line in stderr_text.splitlines():
        text = line.strip()
        if not text:
            continue
        if not _PREFIX_RE.match(text):
            if in_error:
                errors[-1] = f"{errors[-1]}; {text}"
            continue
        text = _OPTION_ECHO_RE.sub("", _PREFIX_RE.sub("", text, count=1), count=1)
        in_error = not text.lower().startswith("warning:") and not text.startswith("terminating on")
        if in_error:
            errors.append(text)
    return errors[-1].rstrip(".") if errors else None


def explain_refusal(stderr_text: str, returncode: int) -> str:
    """One sentence on why QEMU would not start and what to do next."""
    message = qemu_message(stderr_text)
    if message is None:
        if returncode < 0:
            name = signal.Signals(-returncode).name
            return f"QEMU was killed by {name} while starting; check the host's logs and try again."
        return (
            f"QEMU exited with status {returncode} while starting without saying why; "
            "check the host's logs and try again."
        )
    for pattern, explain in _KNOWN:
        match = pattern.search(message)
        if match:
            return explain(match, message)
    return f"QEMU refused to start the VM ({message}); check the VM's settings and try again."


def _port_in_use(match: re.Match[str], message: str) -> str:
    where = match["addr"] or "0.0.0.0"
    return (
        f"QEMU could not forward host port {match['port']}/{match['proto']} on {where} "
        f"({message}); the port is probably in use by another program or VM, so choose "
        "another host port."
    )


def _cannot_open(match: re.Match[str], message: str) -> str:
    return (
        f"QEMU could not open {match['path']} ({message}); check that the file exists and "
        "is readable, or recreate the VM."
    )


def _disk_locked(match: re.Match[str], message: str) -> str:
    return (
        f"QEMU could not lock the VM's disk ({message}); another QEMU process is using it, "
        "so stop that VM first."
    )


def _pidfile_locked(match: re.Match[str], message: str) -> str:
    return f"Another QEMU is already running for this VM ({message}); stop it first."


def _kvm_failed(match: re.Match[str], message: str) -> str:
    return f"QEMU could not use KVM ({message}); start the VM with --accel tcg."


def _no_memory(match: re.Match[str], message: str) -> str:
    return (
        f"The host could not give QEMU the VM's memory ({message}); give the VM less memory "
        "or stop other VMs."
    )


_KNOWN: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], str], str]], ...] = (
    (_HOSTFWD_RE, _port_in_use),
    (re.compile(r'Failed to get "(write|read|consistent read)" lock'), _disk_locked),
    (re.compile(r"Cannot lock pid file"), _pidfile_locked),
    (_MISSING_FILE_RE, _cannot_open),
    (re.compile(r"\bkvm\b|KVM", re.IGNORECASE), _kvm_failed),
    (re.compile(r"cannot set up guest memory|Cannot allocate memory"), _no_memory),
)
