"""The network shaper: its token bucket, its frame relay over real sockets, its process."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.errors import QemuError
from bungalow.host.netshaper import (
    MIN_BURST,
    Direction,
    TokenBucket,
    relay,
    split_frames,
)
from bungalow.host.shaping import (
    ShaperFiles,
    set_shaper_rate,
    shaper_pid,
    start_shaper,
    stop_shaper,
)
from tests.support import wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_a_burst_through_then_holds_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1_000_000, clock)
    assert bucket.burst == 125_000
    bucket.take(125_000)
    assert bucket.wait() == 0.0  # a full bucket's worth passes at once
    bucket.take(500_000)
    assert bucket.wait() == pytest.approx(0.5)
    clock.now += 0.25
    assert bucket.wait() == pytest.approx(0.25)
    clock.now += 10  # a quiet spell refills to the burst, no further
    bucket.take(125_000)
    assert bucket.wait() == 0.0
    bucket.take(1)
    assert bucket.wait() > 0


def test_a_bucket_changes_rate_with_its_debt_and_lifts() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100_000, clock)
    bucket.take(MIN_BURST + 100_000)
    assert bucket.wait() == pytest.approx(1.0)
    bucket.set_rate(200_000)
    assert bucket.wait() == pytest.approx(0.5)  # the debt is kept, paid off faster
    bucket.set_rate(0)
    assert bucket.wait() == 0.0
    bucket.take(10**9)
    assert bucket.wait() == 0.0
    with pytest.raises(ValueError):
        bucket.set_rate(-1)


def test_a_small_rate_still_bursts_a_few_frames() -> None:
    assert TokenBucket(20_000, FakeClock()).burst == MIN_BURST


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def test_split_frames_keeps_a_partial_frame_back() -> None:
    data = bytearray(_frame(b"a" * 60) + _frame(b"b" * 1500) + _frame(b"c" * 100)[:50])
    assert split_frames(data) == (4 + 60 + 4 + 1500, 1560)
    assert split_frames(bytearray(b"\x00\x00")) == (0, 0)


@pytest.fixture
def relayed() -> Iterator[tuple[socket.socket, socket.socket, list[TokenBucket]]]:
    """Two socket pairs joined by the relay in a thread: (guest end, host end, buckets)."""
    guest, nic = socket.socketpair()
    host, wan = socket.socketpair()
    wakeup, alarm = socket.socketpair()
    buckets = [TokenBucket(0), TokenBucket(0)]
    for sock in (nic, wan, wakeup):
        sock.setblocking(False)
    ways = [Direction(nic, wan, buckets[0]), Direction(wan, nic, buckets[1])]
    thread = threading.Thread(target=relay, args=(ways, wakeup, lambda: None), daemon=True)
    thread.start()
    yield guest, host, buckets
    guest.close()  # end of stream: the relay returns
    thread.join(5)
    assert not thread.is_alive()
    for sock in (nic, wan, host, wakeup, alarm):
        sock.close()


def _send_and_time(sender: socket.socket, receiver: socket.socket, frames: list[bytes]) -> float:
    expected = b"".join(_frame(f) for f in frames)
    began = time.monotonic()
    writer = threading.Thread(target=sender.sendall, args=(expected,))
    writer.start()
    got = bytearray()
    while len(got) < len(expected):
        got += receiver.recv(1 << 16)
    writer.join()
    assert bytes(got) == expected  # whole, in order, untouched
    return time.monotonic() - began


def test_the_relay_holds_each_direction_to_its_rate(
    relayed: tuple[socket.socket, socket.socket, list[TokenBucket]],
) -> None:
    guest, host, buckets = relayed
    frames = [os.urandom(1500) for _ in range(200)]  # 300 KB
    buckets[0].set_rate(100_000)
    up = _send_and_time(guest, host, frames)
    # 300 KB less the 16 KB burst at 100 KB/s is 2.84 s
    assert 2.6 < up < 4.0, up
    down = _send_and_time(host, guest, frames)
    assert down < 1.0, down  # the other way has its own bucket, unlimited


def test_the_relay_passes_frames_unlimited_quickly(
    relayed: tuple[socket.socket, socket.socket, list[TokenBucket]],
) -> None:
    guest, host, _ = relayed
    frames = [os.urandom(n) for n in (60, 1514, 9000, 64, 1) * 200]
    assert _send_and_time(host, guest, frames) < 2.0


@pytest.fixture
def fake_qemu() -> Iterator[tuple[Path, socket.socket, socket.socket]]:
    """A run directory with two listening sockets, as QEMU makes them."""
    run_dir = Path(tempfile.mkdtemp(prefix="shp-", dir="/tmp"))
    listeners = []
    for name in ("nic.sock", "wan.sock"):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(run_dir / name))
        listener.listen(1)
        listeners.append(listener)
    yield run_dir, listeners[0], listeners[1]
    stop_shaper(run_dir)
    for listener in listeners:
        listener.close()
    for path in run_dir.iterdir():
        path.unlink()
    run_dir.rmdir()


def test_the_shaper_process_starts_detached_changes_rate_and_stops(
    fake_qemu: tuple[Path, socket.socket, socket.socket],
) -> None:
    run_dir, nic_listener, wan_listener = fake_qemu
    pid = start_shaper(run_dir, run_dir / "nic.sock", run_dir / "wan.sock", 100_000)
    assert shaper_pid(run_dir) == pid
    nic, _ = nic_listener.accept()
    wan, _ = wan_listener.accept()
    nic.settimeout(10)
    wan.settimeout(10)
    frames = [os.urandom(1500) for _ in range(120)]  # 180 KB: 1.64 s at 100 KB/s
    assert _send_and_time(nic, wan, frames) > 1.2
    assert set_shaper_rate(run_dir, None)
    # The shaper re-reads the rate on SIGHUP: once a burst well past the bucket passes at
    # more than the old rate (60 KB: 0.44 s at 100 KB/s), the new one is in force.
    wait_until("the rate lifted", lambda: _send_and_time(wan, nic, frames[:40]) < 0.2)
    assert _send_and_time(wan, nic, frames * 5) < 1.0
    assert ShaperFiles(run_dir).rate.read_text().strip() == "0"
    stop_shaper(run_dir)
    assert shaper_pid(run_dir) is None
    assert not any(path.exists() for path in ShaperFiles(run_dir).all())
    nic.close()
    wan.close()


def test_a_shaper_ends_by_itself_when_qemu_closes(
    fake_qemu: tuple[Path, socket.socket, socket.socket],
) -> None:
    run_dir, nic_listener, wan_listener = fake_qemu
    pid = start_shaper(run_dir, run_dir / "nic.sock", run_dir / "wan.sock", None)
    nic, _ = nic_listener.accept()
    wan, _ = wan_listener.accept()
    nic.close()
    wait_until("the shaper's end", lambda: shaper_pid(run_dir) != pid, timeout=5, interval=0.05)
    assert shaper_pid(run_dir) is None
    wan.close()


def test_a_shaper_with_no_qemu_to_reach_says_so(tmp_path: Path) -> None:
    with pytest.raises(QemuError, match="could not start"):
        start_shaper(tmp_path, tmp_path / "nic.sock", tmp_path / "wan.sock", 1 << 20)
    assert shaper_pid(tmp_path) is None
