"""The dashboard with many VMs: the VM list in a browser against ``ls``, and what open pages cost.

One daemon with the dashboard listener on (loopback, plain HTTP) and N VMs: one
micro VM booted, the others forked from it (one snapshot, N-1 clones running
from it, as cheap as VMs get). Then, in one run:

- *list*: from ``page.goto(/ui/)`` in headless Chromium (Debian's, driven by
  Playwright) until the VM list shows all N rows, against ``bungalow ls --json``
  from the command to its exit; median of R page loads and of R runs, and the ratio;
- *CPU*: the daemon's CPU time (utime + stime, /proc/PID/stat) over a window of
  W seconds with D dashboards open (each its own browser context, logged in, on
  the VM list with its live updates) against the same window with none open;
  rounds interleaved so the shared machine's noise hits both sides;
- *memory*: the daemon's RSS and PSS at the end of each window.

The browser's own CPU and memory are not the daemon's and are not counted.

    .venv/bin/python bench/dashboard.py [--vms 50] [--rounds 5] [--dashboards 5]
                                        [--window 30] [--memory 256M] [--quick]

Target (issue 14): the daemon's CPU with 5 dashboards open at most 1.2x that with none.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from _support import (
    BUNGALOW,
    BenchFailed,
    build_image,
    bungalow_env,
    cli,
    parse_args,
    positive,
    pss_kib,
    ratio,
    run,
    scratch_dir,
)
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from bungalow.host.allocation import Ratios

#: Debian's chromium (scripts/install): Playwright drives it by its path, downloads nothing.
CHROMIUM = "/usr/bin/chromium"
#: A row of the dashboard's VM list (static/js: one ``tr[data-vm]`` per VM).
ROW = "[data-vm]"
#: How long a page may take to show the list on a busy host (ms, Playwright's unit).
SHOW_TIMEOUT_MS = 120_000
#: What /proc/PID/stat counts CPU time in.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- pure parts (tests/bench/test_dashboard_bench.py) --------------------------------------------


def bench_config(port: int, vms: int, cpus: int) -> str:
    """config.toml of the bench's daemon: the dashboard on ``port``, no sandbox pool (a
    pooled VM would be one more row and one more guest), and a vCPU ratio just high
    enough to admit ``vms`` idle one-vCPU VMs on ``cpus`` host CPUs (as bench/sandbox.py)."""
    cpu_ratio = max(Ratios().cpu, math.ceil(vms / cpus))
    return (
        "[sandboxes]\npool = 0\n\n"
        f"[allocation]\ncpu = {cpu_ratio:g}\n\n"
        f'[dashboard]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
    )


def cpu_ticks(stat: str) -> int:
    """utime + stime, in clock ticks, of one ``/proc/PID/stat`` line (proc(5): fields 14
    and 15; the command name in parentheses may hold spaces, so count after its ``)``)."""
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(status: str) -> int:
    """``VmRSS`` of one ``/proc/PID/status``, in KiB."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchFailed("/proc/PID/status has no VmRSS line (a kernel thread, or gone)")


@dataclass(frozen=True)
class Window:
    """What the daemon used over one measuring window: CPU seconds, and memory at its end."""

    cpu_seconds: float
    seconds: float
    rss_kib: int
    pss_kib: int

    @property
    def cpu_share(self) -> float:
        """CPU seconds per second of the window (1.0: one CPU busy all along)."""
        return self.cpu_seconds / self.seconds


def compare(label: str, open_: Sequence[float], none: Sequence[float], unit: str) -> str:
    """One line: the medians with D dashboards open and with none, and their ratio."""
    with_pages, without = statistics.median(open_), statistics.median(none)
    return f"  {label:14} open {with_pages:9.3f} {unit:4} none {without:9.3f} {unit:4}" + (
        f"  ratio {ratio(with_pages, without)}"
    )


# -- the daemon and its VMs ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def daemon_pid(home: Path) -> int:
    try:
        return int((home / "bungalowd.pid").read_text())
    except (OSError, ValueError):
        raise BenchFailed(f"no daemon runs for {home} (bungalowd.pid unreadable)") from None


def make_vms(env: Mapping[str, str], count: int, memory: str) -> None:
    """One micro VM booted, and ``count - 1`` forks of it (one snapshot, running clones)."""
    cli(env, "launch", "dash-0", "--memory", memory)
    if count > 1:
        cli(env, "fork", "dash-0", "--count", str(count - 1), "--json", timeout=1800)
    shown = len(json.loads(cli(env, "ls", "--json")))
    if shown != count:
        raise BenchFailed(f"bungalow ls shows {shown} VMs where {count} were made")


def ls_seconds(env: Mapping[str, str], count: int) -> float:
    """Seconds ``bungalow ls --json`` takes from the command to its exit, checked for rows."""
    began = time.perf_counter()
    result = subprocess.run([BUNGALOW, "ls", "--json"], env=env, capture_output=True, check=True)
    took = time.perf_counter() - began
    if len(json.loads(result.stdout)) != count:
        raise BenchFailed("bungalow ls --json did not list every VM")
    return took


# -- the browser --------------------------------------------------------------------------------


def login_url(env: Mapping[str, str]) -> str:
    return str(json.loads(cli(env, "dashboard", "--json"))["url"])


def logged_in(browser: Browser, env: Mapping[str, str]) -> BrowserContext:
    """A browser context with a session of its own, through ``bungalow dashboard``'s ticket."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(login_url(env))
    page.wait_for_url("**/ui/**")
    page.close()
    return context


def show_list(page: Page, origin: str, count: int) -> float:
    """Seconds from going to the dashboard until its VM list shows ``count`` rows."""
    began = time.perf_counter()
    page.goto(f"{origin}/ui/")
    page.wait_for_function(
        f"document.querySelectorAll({ROW!r}).length >= {count}", timeout=SHOW_TIMEOUT_MS
    )
    return time.perf_counter() - began


def measure(pid: int, seconds: float) -> Window:
    """The daemon's CPU over the next ``seconds``, and its RSS and PSS at the end."""
    stat = Path(f"/proc/{pid}/stat")
    before, began = cpu_ticks(stat.read_text()), time.monotonic()
    time.sleep(seconds)
    after, ended = cpu_ticks(stat.read_text()), time.monotonic()
    return Window(
        (after - before) / CLOCK_TICKS,
        ended - began,
        rss_kib(Path(f"/proc/{pid}/status").read_text()),
        pss_kib(pid),
    )


@contextmanager
def dashboards(
    browser: Browser, env: Mapping[str, str], origin: str, n: int, count: int
) -> Iterator[None]:
    """``n`` dashboards open on the VM list (live updates flowing) for the block's length."""
    with ExitStack() as stack:
        for _ in range(n):
            context = logged_in(browser, env)
            stack.callback(context.close)
            show_list(context.new_page(), origin, count)
        yield


# -- the steps ----------------------------------------------------------------------------------


def list_step(
    browser: Browser, env: Mapping[str, str], origin: str, count: int, rounds: int
) -> None:
    context = logged_in(browser, env)
    try:
        page = context.new_page()
        first = show_list(page, origin, count)  # the static files come into the browser's cache
        pages, ls = [], []
        for index in range(rounds):
            pages.append(show_list(page, origin, count))
            ls.append(ls_seconds(env, count))
            print(f"  round {index + 1}: page {pages[-1] * 1000:6.0f} ms  "
                  f"ls {ls[-1] * 1000:6.0f} ms", flush=True)  # fmt: skip
    finally:
        context.close()
    page_ms, ls_ms = statistics.median(pages) * 1000, statistics.median(ls) * 1000
    print(f"\nthe VM list with {count} VMs, median of {rounds}:")
    print(f"  {f'headless Chromium, /ui/ to {count} rows':40} {page_ms:7.0f} ms"
          f"  (the first load, nothing cached: {first * 1000:.0f} ms)")  # fmt: skip
    print(f"  {'bungalow ls --json':40} {ls_ms:7.0f} ms")
    print(f"  {'ratio page / ls':40} {ratio(page_ms, ls_ms)}")


def load_step(
    browser: Browser, env: Mapping[str, str], origin: str, pid: int, args: argparse.Namespace
) -> None:
    opened: list[Window] = []
    closed: list[Window] = []
    for index in range(args.rounds):
        closed.append(measure(pid, args.window))
        with dashboards(browser, env, origin, args.dashboards, args.vms):
            opened.append(measure(pid, args.window))
        print(
            f"  round {index + 1}: CPU none {closed[-1].cpu_share:.3f}  "
            f"{args.dashboards} open {opened[-1].cpu_share:.3f}",
            flush=True,
        )
    print(f"\nbungalowd with {args.dashboards} dashboards open against none, {args.vms} VMs, "
          f"{args.window:g} s windows, median of {args.rounds}:")  # fmt: skip
    print(compare("CPU", [w.cpu_share for w in opened], [w.cpu_share for w in closed], "CPU")
          + "  (target <= 1.20)")  # fmt: skip
    print(
        compare(
            "RSS", [w.rss_kib / 1024 for w in opened], [w.rss_kib / 1024 for w in closed], "MiB"
        )
    )
    print(
        compare(
            "PSS", [w.pss_kib / 1024 for w in opened], [w.pss_kib / 1024 for w in closed], "MiB"
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=positive, default=50)
    parser.add_argument("--rounds", type=positive, default=5)
    parser.add_argument("--dashboards", type=positive, default=5)
    parser.add_argument("--window", type=float, default=30.0, help="seconds a CPU window lasts")
    parser.add_argument("--memory", default="256M")
    args = parse_args(parser, {"vms": 3, "rounds": 1, "dashboards": 2, "window": 10.0})

    port = free_port()
    config = bench_config(port, args.vms, len(os.sched_getaffinity(0)))
    origin = f"http://127.0.0.1:{port}"
    with scratch_dir("dash", config) as home:
        env = bungalow_env(home)
        build_image(env)
        print(f"making {args.vms} VMs (one boot, {args.vms - 1} forks)...", flush=True)
        make_vms(env, args.vms, args.memory)
        pid = daemon_pid(home)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                list_step(browser, env, origin, args.vms, args.rounds)
                load_step(browser, env, origin, pid, args)
            finally:
                browser.close()


if __name__ == "__main__":
    run(main)
