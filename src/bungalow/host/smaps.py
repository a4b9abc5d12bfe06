"""What a QEMU costs the host in memory, and how much of it is the guest's RAM.

Two readings of ``/proc/PID``:

- ``smaps_rollup``: the whole process's ``Rss`` and ``Pss`` (proportional set size:
  each page divided by the number of processes mapping it, so pages KSM merged, or a
  snapshot's page cache that clones share, are counted once across the host);
- ``smaps``: the same per mapping, of which the guest's RAM is the mappings flagged
  ``mg`` in ``VmFlags`` (``MADV_MERGEABLE``): QEMU marks every RAM block so, and only
  those, under ``-machine mem-merge=on`` (its default, which bungalow keeps: the main
  RAM, a snapshot's private file mapping, video RAM, firmware and ROM blocks).

The arithmetic (:class:`QemuMemory`): ``overhead = pss - ram_pss``: QEMU's own cost
(its code and libraries' share, heap, TCG's translation cache, device buffers); the
guest's RAM as the host holds it is ``ram_pss``. Sizes are bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class QemuMemory:
    """One QEMU's memory, in bytes: whole-process ``rss``/``pss``, the guest RAM's part
    of them (``ram_rss``/``ram_pss``) and ``ram_size``, the RAM mappings' size."""

    rss: int
    pss: int
    ram_rss: int
    ram_pss: int
    ram_size: int

    @property
    def overhead(self) -> int:
        """QEMU's own memory: its PSS less the guest RAM's (never below 0)."""
        return max(0, self.pss - self.ram_pss)


def _kib(line: str) -> int:
    return int(line.split()[1]) * 1024


def parse_rollup(text: str) -> tuple[int, int]:
    """(Rss, Pss) in bytes from ``smaps_rollup``'s text."""
    rss = pss = 0
    for line in text.splitlines():
        if line.startswith("Rss:"):
            rss = _kib(line)
        elif line.startswith("Pss:"):
            pss = _kib(line)
    return rss, pss


def parse_ram(text: str) -> tuple[int, int, int]:
    """(Size, Rss, Pss) in bytes, summed over the ``smaps`` mappings flagged ``mg``."""
    size = rss = pss = 0
    mapping = [0, 0, 0]
    for line in text.splitlines():
        if line.startswith("Size:"):
            mapping = [_kib(line), 0, 0]
        elif line.startswith("Rss:"):
            mapping[1] = _kib(line)
        elif line.startswith("Pss:"):
            mapping[2] = _kib(line)
        elif line.startswith("VmFlags:") and "mg" in line.split()[1:]:
            size, rss, pss = size + mapping[0], rss + mapping[1], pss + mapping[2]
    return size, rss, pss


def qemu_memory(pid: int, proc: Path = Path("/proc")) -> QemuMemory:
    """``pid``'s :class:`QemuMemory`; OSError if it is gone or not readable. Reading
    ``smaps`` walks the page tables (a few milliseconds for a 512 MiB guest): call it
    from a thread."""
    rss, pss = parse_rollup((proc / str(pid) / "smaps_rollup").read_text())
    size, ram_rss, ram_pss = parse_ram((proc / str(pid) / "smaps").read_text())
    return QemuMemory(rss=rss, pss=pss, ram_rss=ram_rss, ram_pss=ram_pss, ram_size=size)
