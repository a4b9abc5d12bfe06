"""A VM's TPM 2.0 as QEMU sees it: a ``tpm-emulator`` backend on swtpm's control socket.

The device is ``tpm-crb``, the interface q35's ACPI tables describe (a TPM2 table
and an MSFT0101 device), which Linux's built-in ``tpm_crb`` and OVMF drive. QEMU
connects to the socket when it starts, so swtpm must already listen
(host/swtpm.py starts it); a live migration carries the TPM's state, which QEMU
fetches from swtpm and hands to the receiving side's.
"""

from __future__ import annotations

from pathlib import Path


def tpm_args(socket: Path) -> list[str]:
    """The options of a ``tpm-crb`` backed by the swtpm listening on ``socket``."""
    return [
        "-chardev", f"socket,id=chrtpm,path={socket.absolute()}",
        "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
        "-device", "tpm-crb,tpmdev=tpm0",
    ]  # fmt: skip
