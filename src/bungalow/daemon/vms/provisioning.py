"""A VM's provisioning: its NoCloud seed (cloud-init) and the SSH keys its agent installs.

Both come from the VM's row (``user_data``, ``ssh_keys``), so a clone, which
inherits them, gets a seed of its own with its own instance-id (its VM id), and
a daemon restart loses nothing. The keys are installed through the agent on
every start rather than by cloud-init alone: that works on images without
cloud-init or sshd, and puts back a key a guest's user removed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bungalow.daemon.state.records import VmRecord
from bungalow.errors import AgentError, UserError
from bungalow.guest.channel import AgentChannel
from bungalow.images.store import Image
from bungalow.provision.seed import SEED, build_seed
from bungalow.provision.sshkeys import MAX_KEYS, parse_public_key
from bungalow.provision.userdata import check_user_data

#: Seconds the agent has to install keys (a shell and a few file operations).
KEYS_TIMEOUT = 30.0
#: Run by /bin/sh with the keys as its arguments: puts each key in root's authorized_keys
#: as a line of its own, with the modes sshd's StrictModes wants (0700 and 0600). A line
#: holding the same key with options goes: cloud-init's ``disable_root`` (its default) puts
#: ``command="echo 'Please login as the user \"debian\"...'"`` before root's keys, and
#: sshd takes the first line a key matches. The file is rewritten only when it changes.
_INSTALL_KEYS = r"""
set -e
umask 077
home=$(getent passwd root | cut -d: -f6); home=${home:-/root}
mkdir -p "$home/.ssh"
keys="$home/.ssh/authorized_keys"
touch "$keys"
new="$keys.bungalow"
cp "$keys" "$new"
for key in "$@"; do
    blob=$(printf '%s\n' "$key" | cut -d' ' -f2)
    grep -vF -- "$blob" "$new" > "$new.tmp" || true
    mv "$new.tmp" "$new"
    printf '%s\n' "$key" >> "$new"
done
if cmp -s "$new" "$keys"; then rm "$new"; else mv "$new" "$keys"; fi
chown root:root "$home/.ssh" "$keys"
chmod 0700 "$home/.ssh"
chmod 0600 "$keys"
"""


def checked_user_data(user_data: str | None, image: Image) -> str | None:
    """``user_data`` checked (userdata.py) and allowed for ``image``, or UserError.

    A built image says whether it runs cloud-init (found at build time); an
    imported disk is taken at its word, as bungalow does not look inside it.
    """
    if user_data is None:
        return None
    check_user_data(user_data)
    if image.cloud_init is False:
        name = image.name or image.short_id
        raise UserError(
            f"The image {name} does not run cloud-init, so its user-data would never be "
            "read; launch from debian-12-server (or another image with cloud-init), or use "
            "--ssh-key and `bungalow exec` on this one."
        )
    return user_data


def checked_keys(keys: list[str]) -> list[str]:
    """Public keys, each checked (sshkeys.py), normalised and once; UserError otherwise."""
    unique: list[str] = []
    for number, key in enumerate(keys, start=1):
        parsed = parse_public_key(key, what=f"SSH key {number}")
        if parsed.split()[:2] not in [known.split()[:2] for known in unique]:
            unique.append(parsed)
    if len(unique) > MAX_KEYS:
        raise UserError(f"A VM takes at most {MAX_KEYS} SSH keys; {len(unique)} were given.")
    return unique


def seed_of(vm_dir: Path, vm: VmRecord) -> Path | None:
    """Where the VM's NoCloud seed is, if it has one (QEMU attaches it read-only)."""
    return vm_dir / SEED if vm.user_data is not None else None


def make_seed(vm_dir: Path, vm: VmRecord, image: Image) -> None:
    """Write the VM's seed (instance-id: its id; hostname: its name). Blocks: use a thread.

    Its SSH keys go into the meta-data only for an image without the bungalow agent (an
    imported disk), whose cloud-init then gives them to the image's default user; where
    the agent installs them, cloud-init's own handling (root's keys made to print
    "login as debian") would only get in the way.
    """
    if vm.user_data is not None:
        build_seed(
            vm_dir,
            vm.user_data,
            instance_id=vm.id,
            hostname=vm.name,
            public_keys=vm.ssh_keys if image.kind != "linux" else (),
        )


async def install_keys(agent: AgentChannel, vm: VmRecord, keys: list[str] | None = None) -> None:
    """Add ``keys`` (default: the VM's own) to root's authorized_keys in the guest.

    AgentError with a sentence if the guest could not (a read-only root, no shell).
    """
    wanted = vm.ssh_keys if keys is None else keys
    if not wanted:
        return
    session = await agent.exec(
        ["/bin/sh", "-c", _INSTALL_KEYS, "sh", *wanted], timeout=KEYS_TIMEOUT
    )
    result = await asyncio.wait_for(session.collect(), KEYS_TIMEOUT + 15)
    if result.exit_code != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        raise AgentError(
            f"The guest of {vm.name} could not install its SSH keys "
            f"({said[-1] if said else f'exit status {result.exit_code}'}); "
            f"see `bungalow exec {vm.name} -- ls -la /root/.ssh`."
        )
