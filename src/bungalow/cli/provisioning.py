"""Reading ``launch --cloud-init FILE`` and ``--ssh-key FILE``: each file checked here first,
so a mistake is said with the file's name before anything is asked of bungalowd (which
checks the text again, for every other client)."""

from __future__ import annotations

from pathlib import Path

from bungalow.errors import UserError


def read_cloud_init(path: Path) -> str:
    """The user-data in ``path``, checked as cloud-init will read it; UserError otherwise."""
    from bungalow.provision.userdata import MAX_USER_DATA, check_user_data

    data = _read(path, "--cloud-init", limit=MAX_USER_DATA)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise UserError(
            f"--cloud-init {path} is not UTF-8 text; give a #cloud-config YAML file or a script."
        ) from None
    return check_user_data(text, what=f"--cloud-init {path}").text


def read_ssh_keys(paths: list[Path]) -> list[str]:
    """The public keys in the ``paths`` (each a .pub or authorized_keys file); UserError for a
    private key, an empty file, or one that holds no key."""
    from bungalow.provision.sshkeys import MAX_KEY_LENGTH, MAX_KEYS, check_public_keys

    keys: list[str] = []
    for path in paths:
        data = _read(path, "--ssh-key", limit=MAX_KEYS * MAX_KEY_LENGTH)
        keys += check_public_keys(data.decode(errors="replace"), what=f"--ssh-key {path}")
    return keys


def _read(path: Path, option: str, *, limit: int) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except IsADirectoryError:
        raise UserError(f"{option} {path} is a folder; give a file.") from None
    except OSError as error:
        raise UserError(f"{option} {path} cannot be read: {error.strerror}.") from None
    if len(data) > limit:
        raise UserError(
            f"{option} {path} is larger than the {limit} bytes bungalow takes; give a smaller file."
        )
    return data
