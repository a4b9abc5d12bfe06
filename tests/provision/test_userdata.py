"""The user-data check: what cloud-init takes passes, what it would skip is refused with a
sentence naming the problem."""

from __future__ import annotations

import pytest

from bungalow.errors import UserError
from bungalow.provision.userdata import MAX_USER_DATA, check_user_data


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("#cloud-config\nruncmd:\n  - [touch, /x]\n", "cloud-config"),
        ("#cloud-config\n", "cloud-config"),
        ("#!/bin/sh\necho hi\n", "script"),
        ("#include\nhttps://example.org/ud\n", "other"),
        (
            'Content-Type: multipart/mixed; boundary="B"\nMIME-Version: 1.0\n\n--B\n'
            "Content-Type: text/cloud-config\n\nruncmd: [[true]]\n--B\n"
            "Content-Type: text/x-shellscript\n\n#!/bin/sh\ntrue\n--B--\n",
            "multipart",
        ),
    ],
)
def test_what_cloud_init_takes_passes(text: str, kind: str) -> None:
    assert check_user_data(text).kind == kind


def test_a_yaml_error_names_line_and_column() -> None:
    with pytest.raises(UserError, match=r"not valid YAML at line 3, column 9") as caught:
        check_user_data("#cloud-config\nruncmd:\n  - a: b: c\n")
    assert "fix it" in caught.value.message


def test_yaml_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(UserError, match="YAML but a list, not a mapping"):
        check_user_data("#cloud-config\n- one\n- two\n")


def test_yaml_without_the_header_is_refused_with_what_to_add() -> None:
    with pytest.raises(UserError, match="add #cloud-config as its first line"):
        check_user_data("runcmd:\n  - [touch, /x]\n")


def test_text_that_is_nothing_cloud_init_knows_is_refused() -> None:
    with pytest.raises(UserError, match=r"starts with 'hello there'.*#cloud-config"):
        check_user_data("hello there\n")


def test_a_bad_cloud_config_part_of_multipart_is_refused() -> None:
    text = (
        'Content-Type: multipart/mixed; boundary="B"\nMIME-Version: 1.0\n\n--B\n'
        "Content-Type: text/cloud-config\n\n[unclosed\n--B--\n"
    )
    with pytest.raises(UserError, match=r"Part 1 \(text/cloud-config\).*not valid YAML"):
        check_user_data(text)


def test_a_part_cloud_init_does_not_run_is_refused() -> None:
    text = (
        'Content-Type: multipart/mixed; boundary="B"\nMIME-Version: 1.0\n\n--B\n'
        "Content-Type: image/png\n\nxx\n--B--\n"
    )
    with pytest.raises(UserError, match="image/png, which cloud-init does not run"):
        check_user_data(text)


def test_too_large_and_nul_are_refused() -> None:
    with pytest.raises(UserError, match="more than the 1048576 bytes"):
        check_user_data("#!/bin/sh\n" + "#" * MAX_USER_DATA)
    with pytest.raises(UserError, match="NUL byte"):
        check_user_data("#!/bin/sh\n\x00")


def test_the_caller_names_the_file() -> None:
    with pytest.raises(UserError, match=r"^--cloud-init db.yaml is YAML but"):
        check_user_data("a: 1\n", what="--cloud-init db.yaml")
