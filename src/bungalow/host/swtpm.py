"""swtpm, the TPM 2.0 emulator a VM with ``--tpm`` gets: one process per running VM.

Started as libvirt starts it: ``swtpm socket --tpm2`` with its state in the VM's
directory (it survives the VM's restarts, and snapshots and clones copy it), its
control channel a Unix socket in the VM's run directory that QEMU's
``tpm-emulator`` connects to, and its pidfile beside it, named on its command line
(``--pid file=``), so a daemon started after a crash finds it in /proc
(host/processes.py). ``--terminate`` ends it when QEMU closes the control channel:
a TPM never outlives its QEMU by more than a moment, and the daemon ends it too.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

from bungalow.errors import QemuError, UserError
from bungalow.host import processes

SWTPM = "swtpm"
#: Seconds swtpm gets to create its socket; it does so before it daemonizes.
START_TIMEOUT = 10.0


def find_swtpm() -> str:
    """swtpm's path; UserError naming the package when it is not installed."""
    found = shutil.which(SWTPM)
    if found is None:
        raise UserError(
            "--tpm needs swtpm, which is not installed on this host; install the Debian "
            "packages swtpm and swtpm-tools (apt-get install swtpm swtpm-tools), or launch "
            "without --tpm."
        )
    return found


def swtpm_argv(binary: str, state: Path, socket: Path, pidfile: Path, log: Path) -> list[str]:
    return [
        binary, "socket", "--tpm2",
        "--tpmstate", f"dir={state.absolute()},mode=0600",
        "--ctrl", f"type=unixio,path={socket.absolute()},mode=0600",
        "--pid", f"file={pidfile.absolute()}",
        "--log", f"file={log.absolute()},level=1",
        "--terminate", "--daemon",
    ]  # fmt: skip


def start_swtpm(state: Path, socket: Path, pidfile: Path) -> int:
    """Start swtpm with its state in ``state`` (made if missing) listening on ``socket``;
    its PID once the socket exists. QemuError with swtpm's own words if it fails.
    Blocks: call it in a thread."""
    binary = find_swtpm()
    state.mkdir(mode=0o700, exist_ok=True)
    socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in (socket, pidfile):
        stale.unlink(missing_ok=True)
    log = socket.with_suffix(".log")
    argv = swtpm_argv(binary, state, socket, pidfile, log)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT)
    processes.reap_exited_children(SWTPM)
    if done.returncode != 0:
        with contextlib.suppress(OSError):
            done.stderr += log.read_text(errors="replace")
        said = (done.stderr or done.stdout).strip().splitlines()
        why = said[-1] if said else f"it exited with status {done.returncode}"
        raise QemuError(f"swtpm could not start for the VM's TPM: {why}.")
    deadline = time.monotonic() + START_TIMEOUT
    while not (socket.exists() and pidfile.exists()):
        if time.monotonic() > deadline:
            stop_swtpm(pidfile)
            raise QemuError(f"swtpm did not make its socket {socket} in {START_TIMEOUT:g} s.")
        time.sleep(0.01)
    return int(pidfile.read_text().strip())


def stop_swtpm(pidfile: Path) -> None:
    """End the swtpm whose pidfile is ``pidfile`` (if it runs) and remove its files.

    Blocks up to a few seconds: call it in a thread."""
    for process in processes.under(pidfile.parent):
        if process.pidfile == pidfile:
            processes.end(process)
    # One that ended with its QEMU (--terminate) is a zombie of ours when bungalowd, a
    # subreaper, inherited it from the daemonizing fork: collect it.
    processes.reap_exited_children(SWTPM)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    pidfile.with_name("swtpm.sock").unlink(missing_ok=True)
