"""The NoCloud seed: a small ISO 9660 volume labelled ``cidata`` that cloud-init reads.

cloud-init's NoCloud datasource (cloudinit.readthedocs.io, datasources/nocloud)
looks for a file system labelled ``cidata`` holding ``user-data`` and
``meta-data``. Debian's ``cloud-localds`` (package cloud-image-utils) makes it
with genisoimage; bungalow writes one per VM, in the VM's directory, and QEMU
attaches it read-only (``MachineSpec.seed``).

``instance-id`` in meta-data is the VM's id: cloud-init runs its per-instance
modules (users, keys, write_files, runcmd) when the id differs from the one it
last saw, so a clone, which gets a new VM id and a seed of its own, is provisioned
afresh, and a restart of the same VM is not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from bungalow.images._tools import run_tool

#: The seed's file name inside a VM's directory.
SEED = "seed.iso"


def meta_data(instance_id: str, hostname: str, public_keys: Sequence[str] = ()) -> str:
    """The NoCloud meta-data document (YAML) for one VM; ``public_keys`` go to the image's
    default user through cloud-init's ssh module (``public-keys``)."""
    document: dict[str, object] = {"instance-id": instance_id, "local-hostname": hostname}
    if public_keys:
        document["public-keys"] = list(public_keys)
    text: str = yaml.safe_dump(
        document,
        default_flow_style=False,
        sort_keys=False,
    )
    return text


def build_seed(
    vm_dir: Path,
    user_data: str,
    *,
    instance_id: str,
    hostname: str,
    public_keys: Sequence[str] = (),
) -> Path:
    """Write ``vm_dir/seed.iso`` for this user-data and identity and return its path.

    Blocks (runs cloud-localds, about 20 ms): call it in a thread. The seed is
    made beside and renamed into place, so a crash leaves either none or a whole one.
    ImageError with a sentence if cloud-localds is missing or fails.
    """
    work = vm_dir / ".seed"
    work.mkdir(mode=0o700, exist_ok=True)
    try:
        (work / "user-data").write_text(user_data)
        (work / "meta-data").write_text(meta_data(instance_id, hostname, public_keys))
        staged = work / SEED
        run_tool(
            ["cloud-localds", "--filesystem=iso", staged, work / "user-data", work / "meta-data"],
            what="making the cloud-init seed",
            workdir=vm_dir,
        )
        staged.chmod(0o444)
        os.replace(staged, vm_dir / SEED)
    finally:
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()
    return vm_dir / SEED
