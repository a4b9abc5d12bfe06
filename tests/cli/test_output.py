"""How the CLI words what the daemon says (pure logic, no daemon)."""

from __future__ import annotations

import pytest

from bungalow.cli.output import in_cli_terms


@pytest.mark.parametrize(
    ("sent", "said"),
    [
        (
            "The request's cpus 512 is not valid: give a whole number from 1 to 255; "
            "see GET /openapi.json.",
            "--cpus 512 is not valid: give a whole number from 1 to 255.",
        ),
        (
            'The request\'s disk_iops "lots" is not valid: give a whole number from 1 to '
            "1000000; see GET /openapi.json.",
            '--disk-iops "lots" is not valid: give a whole number from 1 to 1000000.',
        ),
        (
            'The request\'s query parameter state[0] "runing" is not valid: give one of '
            "'created' or 'running'; see GET /openapi.json.",
            "--state \"runing\" is not valid: give one of 'created' or 'running'.",
        ),
        # Not a top-level field, or not the API's refusal: left as the daemon said it.
        (
            "The request's labels.team 5 is not valid: give text; see GET /openapi.json.",
            "The request's labels.team 5 is not valid: give text; see GET /openapi.json.",
        ),
        ("There is no VM named ghost.", "There is no VM named ghost."),
    ],
)
def test_an_api_field_refusal_names_the_cli_option(sent: str, said: str) -> None:
    words = ["launch", "web", "--cpus", "512", "--disk-iops=lots", "--state", "runing"]
    assert in_cli_terms(sent, words) == said


def test_a_field_given_as_an_argument_is_named_as_a_value() -> None:
    sent = (
        'The request\'s name "Bad_Name" is not valid: give a VM name: 1 to 63 letters; '
        "see GET /openapi.json."
    )
    said = 'The name "Bad_Name" is not valid: give a VM name: 1 to 63 letters.'
    assert in_cli_terms(sent, ["launch", "Bad_Name", "--cpus", "2"]) == said
