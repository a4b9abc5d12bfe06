"""What the benches share: scratch directories that take their processes along, options, measures.

Every daemon, VM and plain QEMU a bench starts lives in a directory from
:func:`scratch_dir`, and every process it starts names that directory on its
command line. Leaving the directory's block, for whatever reason (the end, an
error, Ctrl-C, SIGTERM), stops its daemon, kills every process still naming it
(QEMUs, network shapers, snapshot converters), removes its VMs' control groups
and then the directory: a bench leaves nothing behind on a machine others use.

:func:`run` is a bench's whole program: a failure or an interruption ends it
with one sentence and a non-zero status, once the scratch directories are gone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from bungalow.errors import BungalowError
from bungalow.host.cgroups import VmCgroup
from bungalow.host.ksm import Ksm
from bungalow.host.ksm_owner import KsmOwnership
from bungalow.paths import DataDir

ROOT = Path(__file__).resolve().parent.parent
BUNGALOW = str(ROOT / ".venv" / "bin" / "bungalow")
#: How bungalowd is started (client/autostart.py): ``python -m bungalow.daemon``.
DAEMON_MODULE = b"bungalow.daemon"
#: A daemon finishes its requests in this long after SIGTERM (uvicorn gives them 3 s).
DAEMON_STOP_SECONDS = 15.0
#: A killed process is gone in this long, even on a loaded host.
KILL_WAIT_SECONDS = 10.0
#: Building an image (when the store lacks it) takes minutes; any other command, far less.
CLI_TIMEOUT = 300.0
BUILD_TIMEOUT = 1800.0


class BenchFailed(Exception):
    """A step of a bench did not do what it must for the figures to mean anything."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the scratch directories are cleared on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run(body: Callable[[], None]) -> None:
    """Run a bench's ``main``; failures and interruptions end it with a sentence, never 0."""
    name = f"bench/{Path(sys.argv[0]).name}"
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        body()
    except KeyboardInterrupt as exc:
        print(f"{name}: interrupted; its VMs, daemons and files are removed.", file=sys.stderr)
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        # Die of the signal, so that a calling shell stops too rather than going on.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    except (BenchFailed, BungalowError) as exc:
        sys.exit(f"{name}: {exc}")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


# -- options -----------------------------------------------------------------------------------


def parse_args(parser: argparse.ArgumentParser, quick: Mapping[str, object]) -> argparse.Namespace:
    """The bench's options; ``--quick`` makes ``quick`` the defaults (options given still win).

    Quick mode runs every step and every side of every comparison, at the smallest
    size: it shows that a bench still runs, and its figures are not to be quoted.
    """
    shown = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in quick.items())
    parser.add_argument(
        "--quick", action="store_true", help=f"check that the bench runs (as {shown}); no figures"
    )
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args()
    return args


def positive(text: str) -> int:
    """An argparse type: a whole number of 1 or more (a median needs one value)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not 1 or more")
    return value


# -- bungalow and its data directories ---------------------------------------------------------


def images_dir() -> Path:
    """The image store to share ($BUNGALOW_IMAGES, else the user's): built once, not per run."""
    return DataDir.from_env().images


def bungalow_env(home: Path) -> dict[str, str]:
    """The environment of a CLI (or an SDK daemon) working in ``home`` with the shared images."""
    return {**os.environ, "BUNGALOW_HOME": str(home), "BUNGALOW_IMAGES": str(images_dir())}


def cli(env: Mapping[str, str], *args: str, timeout: float = CLI_TIMEOUT) -> str:
    """The output of ``bungalow ARGS``; a failure ends the bench with the CLI's sentence."""
    command = f"bungalow {' '.join(args)}"
    try:
        result = subprocess.run(
            [BUNGALOW, *args], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BenchFailed(f"{command} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise BenchFailed(f"{command} failed: {result.stderr.strip()}")
    return result.stdout


def build_image(env: Mapping[str, str], name: str = "debian-12") -> None:
    """Make sure the image is in the shared store (quick when it is already there)."""
    cli(env, "image", "build", name, timeout=BUILD_TIMEOUT)


@contextlib.contextmanager
def scratch_dir(kind: str, config: str = "") -> Iterator[Path]:
    """A new /tmp/bgw-bench-KIND-XXXXXXXX (with ``config.toml`` if given), cleared on leaving.

    The path is short: QEMU's Unix sockets under it must fit in 108 bytes.
    """
    path = Path(tempfile.mkdtemp(prefix=f"bgw-bench-{kind}-", dir="/tmp"))
    try:
        if config:
            (path / "config.toml").write_text(config)
        yield path
    finally:
        # A second Ctrl-C waits until the clearing is done, then acts.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            clear(path)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def clear(path: Path) -> None:
    """Stop the daemon of ``path``, kill what still names it, remove its VMs' groups and it."""
    stop_daemons(path)
    leftovers = processes_naming(path)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if alive := wait_gone(leftovers, KILL_WAIT_SECONDS):
        raise BenchFailed(f"processes {alive} under {path} outlived SIGKILL; end them by hand")
    try:
        _remove_groups(path)
        _release_ksm()
    finally:
        shutil.rmtree(path)


def _release_ksm() -> None:
    """Apply KSM's ownership rule now that the daemon's QEMUs are gone: a daemon stopped
    while its VMs ran kept its claim (they still shared), and nobody is left to see them end;
    with no live claim left, a KSM bungalow turned on goes back off (host/ksm_owner.py)."""
    with contextlib.suppress(OSError):
        KsmOwnership("bench-harness", Ksm()).settle([], None)


def stop_daemons(path: Path) -> None:
    """Stop the daemon of the data directory ``path`` (its VMs keep running), if one runs."""
    daemons = [pid for pid, args in processes_naming(path).items() if DAEMON_MODULE in args]
    terminate(daemons, DAEMON_STOP_SECONDS)
    if alive := wait_gone(daemons, KILL_WAIT_SECONDS):
        raise BenchFailed(f"the daemon {alive} of {path} outlived SIGKILL; end it by hand")


def terminate(pids: Collection[int], seconds: float) -> None:
    """SIGTERM each process, then SIGKILL those still alive ``seconds`` later."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in wait_gone(pids, seconds):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_groups(path: Path) -> None:
    """Remove the control groups of the VMs of ``path``, whose QEMUs are gone.

    The daemon removes a VM's group when it sees its QEMU end; none watched these.
    The kernel refuses (EBUSY) for a moment after the last process in it died.
    """
    vms = path / "vms"
    groups = [VmCgroup(vm_dir.name) for vm_dir in vms.iterdir()] if vms.is_dir() else []
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while groups:
        try:
            groups[-1].remove()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            groups.pop()


def processes_naming(path: Path) -> dict[int, list[bytes]]:
    """The command lines of the live processes naming ``path`` or a file under it, by PID."""
    exact, under = bytes(path), bytes(path) + b"/"
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if any(arg == exact or under in arg for arg in args):
            found[int(entry.name)] = args
    return found


def wait_gone(pids: Collection[int], seconds: float) -> list[int]:
    """Wait until every process has exited (a zombie has); those still alive after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # the bench's own child (an SDK-started daemon): reap it
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


# -- measures ----------------------------------------------------------------------------------


def pss_kib(pid: int) -> int:
    """The process's proportional set size: its private pages and its share of shared ones."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise BenchFailed(f"/proc/{pid}/smaps_rollup has no Pss line")


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def ratio(part: float, whole: float, spec: str = ".2f", unit: str = "") -> str:
    """``part / whole`` formatted; n/a when noise or a coarse clock left ``whole`` at 0."""
    return f"{part / whole:{spec}}{unit}" if whole > 0 else "n/a"
