"""A VM's swtpm around its QEMU: started just before it (QEMU connects at start-up), ended
with it, and never left behind by a start that fails (host/swtpm.py)."""

from __future__ import annotations

from bungalow.host.swtpm import start_swtpm, stop_swtpm
from bungalow.qemu.argv import MachineSpec, RunFiles


def start_for(spec: MachineSpec) -> int | None:
    """Start the swtpm ``spec`` names (its PID), or nothing when it has no TPM. Blocks."""
    if spec.tpm_socket is None or spec.tpm_state is None:
        return None
    files = RunFiles(spec.run_dir.absolute())
    files.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return start_swtpm(spec.tpm_state, spec.tpm_socket, files.swtpm_pidfile)


def stop(spec_or_run_dir: MachineSpec | RunFiles) -> None:
    """End the swtpm of a VM's run directory, if one runs. Blocks."""
    files = (
        spec_or_run_dir
        if isinstance(spec_or_run_dir, RunFiles)
        else RunFiles(spec_or_run_dir.run_dir.absolute())
    )
    stop_swtpm(files.swtpm_pidfile)
