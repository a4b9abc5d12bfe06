"""Public keys checked by parsing (the type inside the key data must match), private keys and
garbage refused with a sentence."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bungalow.errors import UserError
from bungalow.provision.sshkeys import check_public_keys, fingerprint, parse_public_key

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMy4GcIER7ff4KaqYaRS57p2FnJGfuIwxdWrdpEyzqHG me@host"


def test_a_public_key_is_taken_and_options_dropped() -> None:
    assert parse_public_key('no-pty,command="x" ' + ED25519) == ED25519
    assert check_public_keys(f"# mine\n\n{ED25519}\n") == [ED25519]


def test_a_private_key_is_refused_pointing_to_the_pub_file() -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(UserError, match=r"private key; give the public key.*\.pub"):
        check_public_keys(text, what="--ssh-key id")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "holds no public key"),
        ("hello world\n", "not an SSH public key"),
        ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x", "its key data is not a ssh-ed25519"),
        ("ssh-ed25519 not-base64!", "its key data is not"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMy4GcIER7", "its key data is not"),
    ],
)
def test_garbage_is_refused(text: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        check_public_keys(text)


def test_keys_ssh_keygen_makes_pass_with_its_fingerprint(tmp_path: Path) -> None:
    for kind in ("ed25519", "ecdsa", "rsa"):
        key = tmp_path / kind
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", key], check=True)
        public = key.with_suffix(".pub").read_text()
        (parsed,) = check_public_keys(public)
        shown = subprocess.run(
            ["ssh-keygen", "-l", "-f", key.with_suffix(".pub")],
            check=True, capture_output=True, text=True,
        ).stdout.split()[1]  # fmt: skip
        assert fingerprint(parsed) == shown


def test_a_remote_command_is_one_shell_line_or_an_exact_argv() -> None:
    from bungalow.cli.ssh import remote_command

    assert remote_command(["ls | wc -l"]) == "ls | wc -l"
    assert remote_command(["sh", "-c", "exit 7"]) == "sh -c 'exit 7'"
