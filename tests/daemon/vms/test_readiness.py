"""Reading systemd's state from the probe's output, and what a wait that runs out says."""

from __future__ import annotations

import pytest

from bungalow.daemon.vms.readiness import (
    NO_SYSTEMD,
    SystemState,
    parse_probe,
    timeout_sentence,
    wait_services,
)
from bungalow.errors import InvalidStateError


def test_a_settled_system_with_failed_units() -> None:
    state = parse_probe("degraded\n0\ncloud-config.service e2scrub_reap.service \n")
    assert state == SystemState("degraded", 0, ("cloud-config.service", "e2scrub_reap.service"))
    assert state.settled


def test_a_starting_system_counts_its_jobs() -> None:
    state = parse_probe("starting\n33\n\n")
    assert state == SystemState("starting", 33, ())
    assert not state.settled


@pytest.mark.parametrize("output", ["", "\n", "starting\nlots\n", "unknown"])
def test_output_cut_short_or_garbled_is_unknown_not_an_error(output: str) -> None:
    state = parse_probe(output)
    assert state.jobs == 0 and not state.settled
    assert state.state in ("unknown", "starting")


def test_the_timeout_sentence_says_where_systemd_was_and_what_to_do() -> None:
    text = timeout_sentence("web", 90, SystemState("starting", 1), "The agent restarted.")
    assert text.startswith("The VM web's services had not finished starting after 90s")
    assert "systemd says starting with 1 job queued" in text
    assert "the agent did not answer last (The agent restarted)" in text
    assert "--timeout" in text and "bungalow exec web -- systemctl list-jobs" in text


async def test_an_image_without_systemd_is_done_at_once() -> None:
    async def no_agent() -> object:
        raise AssertionError("a micro image's wait asks the guest nothing")

    events = [e async for e in wait_services("m", no_agent, systemd=False, timeout=5)]  # type: ignore[arg-type]
    assert events == [{"type": "done", "state": NO_SYSTEMD, "failed": [], "elapsed": 0.0}]


async def test_an_agent_that_never_answers_ends_in_the_timeout_sentence() -> None:
    async def gone() -> object:
        from bungalow.errors import AgentError

        raise AgentError("The agent does not answer.")

    events: list[dict[str, object]] = []
    with pytest.raises(InvalidStateError, match=r"after 0.2s .*systemd says unknown"):
        async for event in wait_services("w", gone, systemd=True, timeout=0.2, interval=0.05):  # type: ignore[arg-type]
            events.append(event)
    assert [(e["type"], e["state"], e["jobs"]) for e in events] == [("progress", "unknown", 0)]
