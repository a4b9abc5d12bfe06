"""Shell completion against a real daemon process: names come from it when it runs, and
completing never starts one. No VM boots (``installation``: no images either)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bungalow.images.recipes import RECIPES
from tests.conftest import Env

#: The installed ``bungalow`` script: completion keys on the program's name (_BUNGALOW_COMPLETE).
SCRIPT = Path(sys.executable).parent / "bungalow"


def _complete(env: Env, words: str) -> list[str]:
    """What bash completion offers for ``words`` (the last one being typed)."""
    parts = words.split(" ")
    done = subprocess.run(
        [str(SCRIPT)],
        env={
            **env.env,
            "_BUNGALOW_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout.split()


def test_names_complete_from_a_running_daemon_and_none_is_started(installation: Env) -> None:
    assert _complete(installation, "bungalow ex") == ["exec"]
    assert _complete(installation, "bungalow image rm deb") == []
    assert installation.daemon_pid() is None
    assert not (installation.home / "bungalowd.sock").exists()
    installation.run("ls")  # starts the daemon
    recipes = sorted(RECIPES)  # not built yet: offered as recipes
    assert _complete(installation, "bungalow image rm deb") == recipes
    assert _complete(installation, "bungalow launch web --image debian-1") == recipes
    assert _complete(installation, "bungalow stop ") == []  # no VM yet
