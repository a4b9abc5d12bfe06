"""QEMU's start-up errors (as QEMU 7.2 prints them) turned into one sentence each."""

from __future__ import annotations

import pytest

from bungalow.qemu.refusal import explain_refusal, qemu_message

HOSTFWD = (
    "qemu-system-x86_64: -netdev user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80: "
    "Could not set up host forwarding rule 'tcp:127.0.0.1:8080-:80'\n"
)
LOCKED = (
    "qemu-system-x86_64: -drive file=/d/disk.qcow2,if=none,id=disk0,format=qcow2: "
    'Failed to get "write" lock\n'
    "Is another process using the image [/d/disk.qcow2]?\n"
)


def test_message_drops_program_and_option_echo() -> None:
    assert qemu_message(HOSTFWD) == "Could not set up host forwarding rule 'tcp:127.0.0.1:8080-:80'"


def test_message_joins_continuation_lines_and_skips_warnings() -> None:
    text = "qemu-system-x86_64: warning: host doesn't support requested feature\nmore\n" + LOCKED
    assert qemu_message(text) == (
        'Failed to get "write" lock; Is another process using the image [/d/disk.qcow2]?'
    )


def test_used_port() -> None:
    assert explain_refusal(HOSTFWD, 1) == (
        "QEMU could not forward host port 8080/tcp on 127.0.0.1 (Could not set up host "
        "forwarding rule 'tcp:127.0.0.1:8080-:80'); the port is probably in use by another "
        "program or VM, so choose another host port."
    )


@pytest.mark.parametrize(
    ("stderr", "start"),
    [
        (LOCKED, "QEMU could not lock the VM's disk"),
        (
            "qemu-system-x86_64: could not open kernel file '/k/vmlinuz': No such file or "
            "directory\n",
            "QEMU could not open /k/vmlinuz (could not open kernel file",
        ),
        (
            "qemu-system-x86_64: cannot set up guest memory 'microvm.ram': Cannot allocate "
            "memory\n",
            "The host could not give QEMU the VM's memory",
        ),
        (
            "qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: No such file "
            "or directory\n",
            "QEMU could not use KVM",
        ),
        (
            "qemu-system-x86_64: Cannot lock pid file: Resource temporarily unavailable\n",
            "Another QEMU is already running for this VM",
        ),
        ("qemu-system-x86_64: -smp 9999: Invalid SMP CPUs 9999\n", "QEMU refused to start the VM"),
    ],
)
def test_known_and_unknown_refusals(stderr: str, start: str) -> None:
    sentence = explain_refusal(stderr, 1)
    assert sentence.startswith(start)
    assert sentence.endswith(".") and "\n" not in sentence


def test_silent_exit() -> None:
    assert explain_refusal("", -9) == (
        "QEMU was killed by SIGKILL while starting; check the host's logs and try again."
    )
    assert explain_refusal("", 1).startswith("QEMU exited with status 1 while starting")
