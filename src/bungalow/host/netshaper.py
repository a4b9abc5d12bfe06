"""The network shaper: one small process per VM that relays its Ethernet frames at a set rate.

QEMU 7.2's user-mode network has no rate limit of its own, and a limit set
inside the guest is one its root can lift. So a VM with a network limit gets a
NIC whose backend is a stream socket, and its user-mode network sits on a QEMU
hub with a second stream socket (``qemu/argv.py``); QEMU listens on both and
this process connects the two, frame by frame::

    guest NIC <-> nic socket <-> [ netshaper ] <-> wan socket <-> hub <-> slirp (NAT, hostfwd)

A frame on a stream socket is a 4-byte big-endian length and the frame. Each
direction has its own token bucket (:class:`TokenBucket`) filled at the rate,
with a burst of 1/8 s of it. While a bucket is in debt the relay reads nothing
more from that side, so the socket buffers fill and QEMU holds its packets
back (the NIC's queue, slirp's TCP window): the guest's TCP sees a slow link,
not losses.

The rate is bytes per second in the rate file (0: unlimited); SIGHUP makes the
relay read it again, so a limit changes while the VM runs. The process ends
when either QEMU connection closes (QEMU is gone) or on SIGTERM. Only the
standard library is used: it starts fast and small, and ``--help`` says how
to run it by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: Seconds of the rate a bucket holds when full (the burst after a quiet spell).
BURST_SECONDS = 0.125
#: The smallest burst, so a frame or two always fits even at a tiny rate.
MIN_BURST = 16 << 10
#: Longest single sleep while in debt, so a raised rate takes effect quickly.
MAX_SLEEP = 0.05
RECV_SIZE = 1 << 16
#: Seconds to wait for QEMU's sockets to appear; within the starter's START_TIMEOUT (20 s).
#: 3 s was too short once on a host at load 9, where QEMU's start itself takes seconds.
CONNECT_TIMEOUT = 15.0
HEADER = 4


class TokenBucket:
    """A token bucket with debt: a batch may take more than the bucket holds, then waits.

    ``take(n)`` spends ``n`` bytes at once and ``wait()`` says how long until the
    balance is back to zero, so the long-run rate is exactly ``rate`` and at most
    ``burst`` bytes pass at once after a quiet spell. ``rate`` 0 means no limit.
    """

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self.rate = 0
        self.burst = 0.0
        self._tokens = 0.0
        self.set_rate(rate)

    def set_rate(self, rate: int) -> None:
        """Change the rate (bytes per second; 0 lifts it); a debt carries over."""
        if rate < 0:
            raise ValueError(f"a rate cannot be negative: {rate}")
        self._refill()
        first = self.rate == 0
        self.rate = rate
        self.burst = max(rate * BURST_SECONDS, float(MIN_BURST)) if rate else 0.0
        self._tokens = self.burst if first else min(self._tokens, self.burst)

    def take(self, size: int) -> None:
        self._refill()
        if self.rate:
            self._tokens -= size

    def wait(self) -> float:
        """Seconds until the bucket is out of debt (0.0 when it is not in debt)."""
        self._refill()
        if not self.rate or self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    def _refill(self) -> None:
        now = self._clock()
        if self.rate:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now


def split_frames(buffer: bytearray) -> tuple[int, int]:
    """How many leading bytes of ``buffer`` are whole length-prefixed frames, and their
    payload (the frames without their headers)."""
    end = payload = 0
    while len(buffer) - end >= HEADER:
        size = int.from_bytes(buffer[end : end + HEADER], "big")
        if len(buffer) - end - HEADER < size:
            break
        end += HEADER + size
        payload += size
    return end, payload


class Direction:
    """One way through the relay: whole frames from ``source`` go to ``target`` at the
    bucket's rate. A batch read is paid for at once and held until the bucket is out
    of debt; nothing more is read meanwhile, so QEMU's own queues hold the rest."""

    def __init__(self, source: socket.socket, target: socket.socket, bucket: TokenBucket):
        self.source = source
        self.target = target
        self.bucket = bucket
        self.inbound = bytearray()  # read, not yet a whole frame
        self.outbound = bytearray()  # whole frames, paid for, not yet written

    def read(self) -> bool:
        """Read what is there (at most a burst) and pay for its whole frames; False at EOF."""
        data = self.source.recv(min(RECV_SIZE, int(self.bucket.burst) or RECV_SIZE))
        if not data:
            return False
        self.inbound += data
        whole, payload = split_frames(self.inbound)
        if whole:
            self.bucket.take(payload)
            self.outbound += self.inbound[:whole]
            del self.inbound[:whole]
        return True

    def write(self) -> None:
        try:
            sent = self.target.send(self.outbound)
        except BlockingIOError:
            return
        del self.outbound[:sent]


def relay(
    directions: list[Direction], wakeup: socket.socket, on_wakeup: Callable[[], None]
) -> None:
    """Move frames both ways until a side closes; ``on_wakeup`` runs when ``wakeup`` stirs."""
    while True:
        readers: list[socket.socket] = [wakeup]
        writers: list[socket.socket] = []
        timeout: float | None = None
        for way in directions:
            delay = way.bucket.wait()
            if delay > 0:
                timeout = min(timeout or MAX_SLEEP, delay, MAX_SLEEP)
            elif way.outbound:
                writers.append(way.target)
            else:
                readers.append(way.source)
        readable, writable, _ = select.select(readers, writers, [], timeout)
        if wakeup in readable:
            with contextlib.suppress(BlockingIOError):
                wakeup.recv(64)
            on_wakeup()
        for way in directions:
            if way.target in writable and way.outbound:
                way.write()
            if way.source in readable and not way.read():
                return
            if way.outbound and way.bucket.wait() == 0:
                way.write()  # at once rather than after another select


def read_rate(path: Path) -> int:
    """The rate in ``path`` (bytes per second, 0 or a missing file: unlimited)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    return max(0, int(text or 0))


def connect(path: Path, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """Connect to QEMU's listening socket, waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _detach(pidfile: Path, log: Path) -> None:
    """Fork; the parent writes the child's pid and exits 0, the child goes on alone."""
    pid = os.fork()
    if pid:
        pidfile.write_text(f"{pid}\n")
        os._exit(0)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    os.close(null)
    os.close(err)


def serve(nic: socket.socket, wan: socket.socket, rate_file: Path) -> None:
    """Relay both directions until one side closes; SIGHUP re-reads the rate.

    SIGTERM ends the process (its default); bungalowd removes the files. One
    thread does everything: two relay threads would wait for each other's GIL
    (up to its 5 ms switch interval), which showed as added latency.
    """
    rate = read_rate(rate_file)
    buckets = TokenBucket(rate), TokenBucket(rate)
    wakeup, alarm = socket.socketpair()
    for sock in (nic, wan, wakeup, alarm):
        sock.setblocking(False)
    signal.set_wakeup_fd(alarm.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGHUP, lambda _signum, _frame: None)

    def reload() -> None:
        with contextlib.suppress(OSError, ValueError):
            new = read_rate(rate_file)
            for bucket in buckets:
                bucket.set_rate(new)

    directions = [Direction(nic, wan, buckets[0]), Direction(wan, nic, buckets[1])]
    with contextlib.suppress(OSError):
        relay(directions, wakeup, reload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bungalow.host.netshaper", description=__doc__)
    parser.add_argument("--nic", type=Path, required=True, help="QEMU's socket of the NIC")
    parser.add_argument("--wan", type=Path, required=True, help="QEMU's socket of the hub")
    parser.add_argument("--rate-file", type=Path, required=True, help="bytes per second")
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True, help="where errors go once detached")
    args = parser.parse_args(argv)
    try:
        read_rate(args.rate_file)
        nic, wan = connect(args.nic), connect(args.wan)
    except (OSError, ValueError) as error:
        print(f"netshaper: cannot start: {error}", file=sys.stderr)
        return 1
    _detach(args.pidfile, args.log)
    serve(nic, wan, args.rate_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
