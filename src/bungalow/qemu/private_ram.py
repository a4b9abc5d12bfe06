"""Guest RAM mapped privately from a snapshot's file, and the guard that keeps the file whole.

A VM restored or cloned from a snapshot maps the snapshot's ``ram`` file
copy-on-write (``memory-backend-file,share=off``): every VM started from one
snapshot shares the pages none of them has written. QEMU discards guest RAM
when a virtio-balloon inflates or when the guest reports free pages
(``free-page-reporting=on``); QEMU 7.2's ``ram_block_discard_range``
(softmmu/physmem.c) does that for RAM backed by a file with
``fallocate(FALLOC_FL_PUNCH_HOLE)`` whether the mapping is shared or private, so
the discard would zero the snapshot's own file under every other VM mapping it
(later QEMUs only warn of it: "Discarding RAM in private file
mappings is possibly dangerous"). The guest decides what it reports and what
its balloon takes, so this would be one guest writing into another's memory.

A QEMU that maps a file privately therefore starts under a seccomp filter
(libseccomp, through pyseccomp) that answers ``EOPNOTSUPP`` to any ``fallocate``
asking to punch a hole. QEMU's discard then fails before it touches the mapping
(it logs ``ram_block_discard_range: Failed to fallocate``), so such a VM keeps
what its guest frees; its disks lose nothing: QEMU's file driver treats
``ENOTSUP`` from a hole punch as "discard unsupported" and writes zeroes where it
must (block/file-posix.c, ``handle_aiocb_write_zeroes_unmap``). A filter is
inherited by every child and kept across ``execve``, and no process can remove
it, so QEMU's own ``-sandbox`` and ``-daemonize`` leave it in place.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pyseccomp

#: fallocate(2)'s ``mode`` bit for a hole punch (linux/falloc.h).
FALLOC_FL_PUNCH_HOLE = 0x02
#: QEMU's memory backend for RAM in a file, as it appears on the command line.
_FILE_BACKEND = "memory-backend-file"


def hole_punch_filter() -> pyseccomp.SyscallFilter:
    """A filter allowing everything but ``fallocate`` with ``FALLOC_FL_PUNCH_HOLE`` in its
    mode (argument 1), which fails with ``EOPNOTSUPP``."""
    refused = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    refused.add_rule(
        pyseccomp.ERRNO(errno.EOPNOTSUPP),
        "fallocate",
        pyseccomp.Arg(1, pyseccomp.MASKED_EQ, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_PUNCH_HOLE),
    )
    return refused


def guard() -> Callable[[], None]:
    """What a child runs between fork and exec (``subprocess``'s ``preexec_fn``) to take the
    filter on; the filter is built here, in the parent, so the child only loads it."""
    refused = hole_punch_filter()

    def load() -> None:
        refused.load()

    return load


def maps_file_privately(pid: int) -> bool:
    """Whether the QEMU ``pid`` was started with its RAM in a file mapped privately (a VM
    resumed from a snapshot): its command line names a ``memory-backend-file`` with
    ``share=off``. False when the process is gone."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    for word in words:
        text = word.decode(errors="replace")
        if text.startswith(_FILE_BACKEND + ",") and "share=off" in text.split(","):
            return True
    return False
