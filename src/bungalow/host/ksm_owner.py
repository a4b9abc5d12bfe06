"""Who owns the host-global KSM knob when several bungalowd share a host, and an admin too.

KSM has one switch per host (``/sys/kernel/mm/ksm/run``), while each data directory has
its own bungalowd (the test suite runs dozens side by side) and the host may have an
admin, or ksmtuned, with views of their own. The rule, kept in a registry every daemon
of the host reads and writes under one ``flock`` (:data:`REGISTRY`):

- A daemon that wants KSM (it runs VMs that can share) *claims* it: a file in
  ``claims/`` named for its data directory, listing its QEMUs (pid and start time). A
  claim counts while one of those processes lives, so a daemon SIGKILLed with its VMs
  running still holds it (its VMs still share), and one whose VMs are all gone holds
  nothing, even if it never ran again.
- KSM is turned on by bungalow only when it is off and nobody turned it off after
  bungalow had turned it on: ``owner.json`` then records that bungalow did, and the
  settings it found, to put back. While ``owner.json`` stands, the daemons may tune the
  scan rate (the advisor, or bungalow's own rule where the kernel has none).
- KSM on without ``owner.json`` is someone else's (an admin's, ksmtuned's): claims ride
  on it, and bungalow changes no knob.
- When the last claim goes, the daemon that drops it puts back the settings
  ``owner.json`` recorded (``run`` 0: ksmd stops, merged pages stay merged until
  written) and removes the record.
- Anyone turning KSM off (``run`` 0 or 2) while ``owner.json`` stands overrules
  bungalow: the record becomes ``yielded.json``, and no daemon turns KSM on again until
  the host reboots or the admin removes that file; bungalow never fights that choice.
  The scan rate bungalow set goes back to what it found, unless someone changed it too.

Every record carries the kernel's boot id: one written before a reboot (where ``/run``
is not a tmpfs) is stale, as are the knobs it speaks of, and is ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from bungalow.host.ksm import Ksm, KsmSettings

REGISTRY = Path("/run/bungalow-ksm")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

#: Who KSM's switch is with now, as ``host info`` says it.
Holder = Literal["bungalow", "other", "off", "yielded", "absent"]


@dataclass(frozen=True)
class Standing:
    """The outcome of one :meth:`KsmOwnership.settle`: who holds KSM, whether this
    daemon's claim counts, and how many daemons claim it."""

    holder: Holder
    claimed: bool
    claims: int
    changed: str | None = None  # what this call did to the knobs, for the log


def _previous(owner: dict[str, object]) -> KsmSettings:
    """The settings ``owner.json`` says bungalow found (the kernel's defaults if unreadable)."""
    previous = owner.get("previous")
    if isinstance(previous, dict):
        with contextlib.suppress(KeyError, ValueError):
            return KsmSettings.from_json(previous)
    return KsmSettings(0, 100, 20, "none")


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of its stat): with the
    pid, it names one process, whatever reuse of the pid comes later. None for a process
    gone, or dead and not yet reaped (a zombie QEMU whose daemon died shares nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class KsmOwnership:
    """One daemon's side of the registry: ``claimant`` names its claim file (a tag of its
    data directory); ``ksm`` and ``registry`` are the host's unless a test gives copies."""

    claimant: str
    ksm: Ksm
    registry: Path = REGISTRY

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        (self.registry / "claims").mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(self.registry / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _record(self, name: str) -> dict[str, object] | None:
        """A record of this boot, else None (a stale one is removed)."""
        path = self.registry / name
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("boot_id") != _boot_id():
            path.unlink(missing_ok=True)
            return None
        return data

    def _write(self, path: Path, data: dict[str, object]) -> None:
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps({**data, "boot_id": _boot_id()}))
        temporary.replace(path)

    def _live_claims(self) -> int:
        """Claims with a live process, removing the others."""
        live = 0
        for claim in (self.registry / "claims").iterdir():
            if claim.name.startswith("."):
                continue
            data = self._record(f"claims/{claim.name}")
            pids = data.get("processes", []) if data else []
            if isinstance(pids, list) and any(_start_time(p) == t for p, t in pids):
                live += 1
            else:
                claim.unlink(missing_ok=True)
        return live

    def held(self) -> bool:
        """Whether this daemon has a claim file (it claimed before, perhaps in another life)."""
        return (self.registry / "claims" / self.claimant).exists()

    def settle(self, pids: Sequence[int], tuning: KsmSettings | None) -> Standing:
        """Claim KSM for ``pids`` (this daemon's QEMUs that should share), or give up the
        claim when ``pids`` is empty, then act on the rule above. ``tuning`` is what an
        owner sets when bungalow holds KSM (``run`` 1 and the scan rate); None leaves the
        rate as it is. Raises OSError when the knobs cannot be written (not root)."""
        if not self.ksm.available:
            return Standing("absent", False, 0)
        with self._locked():
            claim = self.registry / "claims" / self.claimant
            processes = [[pid, t] for pid in pids if (t := _start_time(pid)) is not None]
            if processes:
                self._write(claim, {"processes": processes})
            else:
                claim.unlink(missing_ok=True)
            claims = self._live_claims()
            return self._decide(claims, bool(processes), tuning)

    def _decide(self, claims: int, claimed: bool, tuning: KsmSettings | None) -> Standing:
        owner = self._record("owner.json")
        yielded = self._record("yielded.json") is not None
        run = self.ksm.number("run")
        if owner is not None and run != 1:  # turned off by someone after bungalow turned it on
            self._write(self.registry / "yielded.json", {"run": run})
            (self.registry / "owner.json").unlink(missing_ok=True)
            ours = owner.get("set")
            current = replace(self.ksm.settings(), run=1)
            if run == 0 and isinstance(ours, dict) and KsmSettings.from_json(ours) == current:
                self.ksm.apply(replace(_previous(owner), run=0))  # the rate too, if still ours
            return Standing("yielded", claimed, claims, f"left off: run was set to {run}")
        if owner is not None and claims == 0:
            self.ksm.apply(_previous(owner))
            (self.registry / "owner.json").unlink(missing_ok=True)
            return Standing("off", claimed, claims, "turned off: no VM claims it")
        if owner is not None:
            changed = None
            if tuning is not None and not tuning.same_as(self.ksm.settings()):
                self.ksm.apply(tuning)
                self._write(self.registry / "owner.json", {**owner, "set": self._set()})
                changed = "tuned"
            return Standing("bungalow", claimed, claims, changed)
        if run == 1:
            return Standing("other", claimed, claims)
        if yielded:
            return Standing("yielded", claimed, claims)
        if claims == 0 or run != 0:
            return Standing("off", claimed, claims)
        previous = self.ksm.settings().to_json()
        self._write(self.registry / "owner.json", {"previous": previous})  # before any change
        self.ksm.apply(tuning or KsmSettings(1, 100, 20, None))
        self._write(self.registry / "owner.json", {"previous": previous, "set": self._set()})
        return Standing("bungalow", claimed, claims, "turned on")

    def _set(self) -> dict[str, int | str | None]:
        """The knobs as bungalow just left them, to tell later whether someone changed them."""
        return self.ksm.settings().to_json()

    def look(self) -> Standing:
        """Who holds KSM now, changing nothing."""
        if not self.ksm.available:
            return Standing("absent", False, 0)
        run = self.ksm.number("run")
        with self._locked():
            owner = self._record("owner.json") is not None
            yielded = self._record("yielded.json") is not None
            claims = self._live_claims()
        holder: Holder = (
            ("bungalow" if owner else "other")
            if run == 1
            else "yielded"
            if yielded or owner
            else "off"
        )
        return Standing(holder, self.held(), claims)
