import itertools

import pytest

from bungalow.daemon.state.lifecycle import VmState, can_transition, require_running, transition
from bungalow.errors import InvalidStateError


def test_the_normal_life_of_a_vm_is_allowed() -> None:
    path = [
        VmState.CREATED,
        VmState.STARTING,
        VmState.RUNNING,
        VmState.STOPPING,
        VmState.STOPPED,
        VmState.STARTING,
        VmState.FAILED,
        VmState.STARTING,
    ]
    for current, target in itertools.pairwise(path):
        assert transition("web", current, target) is target


@pytest.mark.parametrize(
    ("current", "target", "words"),
    [
        (VmState.RUNNING, VmState.STARTING, "already running"),
        (VmState.STOPPED, VmState.STOPPING, "already stopped"),
        (VmState.STOPPED, VmState.RUNNING, "start it with `bungalow start web`"),
        (VmState.STOPPED, VmState.PAUSED, "only a running VM can be paused"),
        (VmState.CREATED, VmState.STOPPED, "cannot become"),
    ],
)
def test_wrong_transitions_are_refused_with_a_sentence(
    current: VmState, target: VmState, words: str
) -> None:
    assert not can_transition(current, target)
    with pytest.raises(InvalidStateError, match=words):
        transition("web", current, target)


def test_commands_on_a_stopped_vm_say_how_to_start_it() -> None:
    with pytest.raises(InvalidStateError, match="bungalow start web"):
        require_running("web", VmState.STOPPED, "run a command")
    require_running("web", VmState.RUNNING, "run a command")


def test_a_vm_paused_by_no_one_s_command_is_refused_with_its_reason() -> None:
    why = "the host's disk is full (...); free some space there, or run `bungalow resume web`"
    with pytest.raises(InvalidStateError) as refused:
        require_running("web", VmState.PAUSED, "run a command", why)
    assert refused.value.message == f"Cannot run a command: the VM web is paused: {why}."
    with pytest.raises(InvalidStateError, match="resume it with `bungalow resume web`"):
        require_running("web", VmState.PAUSED, "run a command")  # a user paused it
    require_running("web", VmState.RUNNING, "run a command", why)  # continued: no refusal
