"""What the main commands print and exit with, run in-process against a mock daemon.

``main(argv, connect=...)`` hands every command a client whose transport is an
``httpx.MockTransport`` answering as bungalowd does (tests/client/answers.py);
interactive exec gets a tiny websocket server on a Unix socket. No VM, no
daemon: milliseconds each. The e2e tests beside this module run the same
commands against real VMs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.server import ServerConnection

from bungalow.cli import output
from bungalow.cli.main import main
from bungalow.errors import ConflictError, ImageError, NotFoundError, VmNotFoundError
from bungalow.paths import DataDir
from tests.client import answers
from tests.client.answers import (
    Daemon,
    error_answer,
    exit_event,
    json_answer,
    ndjson_answer,
    short_data_dir,
    vm_info,
    websocket_daemon,
)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Rich sizes its (cached) console from COLUMNS: wide enough that no row wraps."""
    monkeypatch.setenv("COLUMNS", "200")
    output._console.cache_clear()
    yield
    output._console.cache_clear()


@pytest.fixture
def daemon() -> Daemon:
    return Daemon()


class Run:
    """One run of ``bungalow``: its exit status, stdout and stderr."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def rows(self) -> list[list[str]]:
        """The printed lines split into words (a table's cells, where cells are one word)."""
        return [line.split() for line in self.out.splitlines()]


@pytest.fixture
def bungalow(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str, data: DataDir | None = None) -> Run:
        code = main(list(argv), connect=lambda: daemon.client(data))
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Run(code, captured.out, captured.err)

    return run


# -- VMs -----------------------------------------------------------------------------------------


def test_ls_shows_a_table_and_q_only_names(daemon: Daemon, bungalow: Any) -> None:
    now = time.time()
    leased = vm_info("web", created=now - 7200, ports=["8080:80"], expires_in=590.0,
                     lease_warned=True, snapshots_used=64 << 20)  # fmt: skip
    pooled = vm_info("sb-pool", created=now - 30, state="stopped", pooled=True, cost=None)
    daemon.on("GET", "/v1/vms", json_answer([leased, pooled]))
    listing = bungalow("ls")
    assert listing.code == 0
    assert listing.rows() == [
        ["NAME", "STATE", "IMAGE", "CPUS", "MEMORY", "DISK", "PORTS", "AGE", "EXPIRES", "COST"],
        ["web", "running", "debian-12", "1", "512M", "300M/4G", "+64M", "snap", "8080:80", "2h",
         "in", "9m", "!", "0.0412", "USD"],
        ["sb-pool", "stopped", "debian-12", "1", "512M", "300M/4G", "-", "30s", "pool", "-"],
    ]  # fmt: skip
    names = bungalow("ls", "-q")
    assert (names.code, names.out) == (0, "web\nsb-pool\n")


def test_inspect_prints_the_vm_with_its_last_events_as_json(daemon: Daemon, bungalow: Any) -> None:
    daemon.on("GET", "/v1/vms/web", json_answer(vm_info("web")))
    events = [{"id": n, "time": answers.NOW + n, "vm": "web", "kind": "started",
               "message": f"event {n}", "actor": "admin", "reason": "", "project": None}
              for n in range(12)]  # fmt: skip
    daemon.on("GET", "/v1/events", json_answer(events))
    shown = bungalow("inspect", "web")
    assert shown.code == 0
    assert json.loads(shown.out) == {**vm_info("web"), "events": events[-10:]}
    assert dict(daemon.sent("GET", "/v1/events")[0].url.params) == {"limit": "100", "vm": "web"}


def test_launch_sends_the_spec_and_says_what_runs(
    daemon: Daemon, bungalow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "ada")
    monkeypatch.delenv("SUDO_USER", raising=False)
    daemon.on("GET", "/v1/images/debian-12", json_answer(answers.image_info()))
    daemon.on("POST", "/v1/vms", json_answer(vm_info("web", cpus=2, memory=1 << 30), 201))
    launched = bungalow("launch", "web", "-c", "2", "-m", "1G", "-p", "8080:80", "-l", "team=x",
                        "--ttl", "2h", "--cpu-cap", "0.5")  # fmt: skip
    assert (launched.code, launched.out) == (0, "web is running (debian-12, 2 CPU, 1G)\n")
    assert daemon.body("POST", "/v1/vms") == {
        "name": "web", "image": "debian-12", "cpus": 2, "memory": "1G", "ports": ["8080:80"],
        "accel": "auto", "profile": None, "cpu_cap": "0.5", "ttl": "2h", "owner": "ada",
        "labels": {"team": "x"},
    }  # fmt: skip


def test_launch_builds_a_missing_recipe_image_first(daemon: Daemon, bungalow: Any) -> None:
    daemon.on("GET", "/v1/images/debian-13", error_answer(NotFoundError("No image debian-13.")))
    daemon.on("GET", "/v1/images/recipes", json_answer(["debian-12", "debian-13"]))
    build = [{"type": "progress", "stage": "packages", "fraction": 0.5},
             {"type": "done", "image": answers.image_info("debian-13")}]  # fmt: skip
    daemon.on("POST", "/v1/images/build", ndjson_answer(build))
    daemon.on("POST", "/v1/vms", json_answer(vm_info("web", image="debian-13"), 201))
    launched = bungalow("launch", "web", "-i", "debian-13")
    assert (launched.code, launched.out) == (0, "web is running (debian-13, 1 CPU, 512M)\n")
    assert daemon.body("POST", "/v1/images/build") == {"name": "debian-13", "force": False}


def test_a_failed_build_is_one_sentence(daemon: Daemon, bungalow: Any) -> None:
    daemon.on("GET", "/v1/images/debian-13", error_answer(NotFoundError("No image debian-13.")))
    daemon.on("GET", "/v1/images/recipes", json_answer(["debian-13"]))
    failure = {"type": "error", "code": "image_error", "message": "mmdebstrap failed: no network."}
    daemon.on("POST", "/v1/images/build", ndjson_answer([failure]))
    launched = bungalow("launch", "web", "-i", "debian-13")
    assert launched.code == 1
    assert launched.err.endswith(f"error: {ImageError('mmdebstrap failed: no network.')}\n")
    assert daemon.sent("POST", "/v1/vms") == []


def test_rm_of_several_names_goes_on_past_a_failure_and_exits_1(
    daemon: Daemon, bungalow: Any
) -> None:
    for name in ("a", "c"):
        daemon.on("DELETE", f"/v1/vms/{name}", httpx.Response(204))
    missing = VmNotFoundError("There is no VM named b; `bungalow ls` lists the VMs that exist.")
    daemon.on("DELETE", "/v1/vms/b", error_answer(missing))
    removed = bungalow("rm", "a", "b", "c")
    assert removed.code == 1
    assert removed.out == "a is removed\nc is removed\n"
    assert removed.err == f"error: {missing.message}\n"
    alone = bungalow("rm", "b")
    assert (alone.code, alone.out, alone.err) == (1, "", f"error: {missing.message}\n")


# -- exec ----------------------------------------------------------------------------------------

EXEC = "/v1/vms/web/exec"


@pytest.mark.parametrize(
    ("ending", "status"),
    [(exit_event(0), 0), (exit_event(3), 3), (exit_event(None, signal=9), 137)],
)
def test_exec_streams_output_and_passes_the_status_on(
    daemon: Daemon, bungalow: Any, ending: dict[str, Any], status: int
) -> None:
    events = [answers.output("stdout", b"Linux\n"), answers.output("stderr", b"oops\n"), ending]
    daemon.on("POST", EXEC, ndjson_answer(events))
    ran = bungalow("exec", "web", "-e", "A=1", "-w", "/tmp", "--", "sh", "-c", "uname -s")
    assert (ran.code, ran.out, ran.err) == (status, "Linux\n", "oops\n")
    assert daemon.body("POST", EXEC) == {
        "argv": ["sh", "-c", "uname -s"], "env": {"A": "1"}, "cwd": "/tmp", "user": None,
    }  # fmt: skip


def test_exec_past_its_timeout_exits_124_and_says_so(daemon: Daemon, bungalow: Any) -> None:
    killed = exit_event(None, signal=9, timed_out=True)
    daemon.on("POST", EXEC, ndjson_answer([answers.output("stdout", b"started\n"), killed]))
    ran = bungalow("exec", "web", "--timeout", "1", "--", "sleep", "30")
    assert (ran.code, ran.out) == (124, "started\n")
    assert ran.err == "error: The command ran past its timeout of 1s and was killed.\n"
    assert daemon.body("POST", EXEC)["timeout"] == 1.0


def test_exec_without_an_ending_or_a_vm_is_one_sentence_and_125(
    daemon: Daemon, bungalow: Any
) -> None:
    daemon.on("POST", EXEC, ndjson_answer([]))
    cut = bungalow("exec", "web", "--", "true")
    assert (cut.code, cut.err) == (
        125,
        "error: The command ended without an exit status; the VM may have stopped.\n",
    )
    daemon.on("POST", EXEC, error_answer(VmNotFoundError("There is no VM named web.")))
    missing = bungalow("exec", "web", "--", "true")
    assert (missing.code, missing.err) == (125, "error: There is no VM named web.\n")


@pytest.mark.parametrize(
    ("command", "value", "said"),
    [
        ("exec", "abc", "The --timeout 'abc' is not a duration"),
        ("exec", "0", "The --timeout must be positive"),
        ("run", "99999w", "The --timeout '99999w' is longer than 100 years"),
    ],
)
def test_a_bad_exec_or_run_option_is_bungalows_own_failure_125(
    daemon: Daemon, bungalow: Any, command: str, value: str, said: str
) -> None:
    refused = bungalow(command, "web", "--timeout", value, "--", "true")
    assert refused.code == 125 and refused.err.startswith(f"error: {said}"), refused.err
    assert daemon.requests == []  # refused before anything was asked


def test_stop_waits_at_most_an_hour_and_says_so_in_its_terms(daemon: Daemon, bungalow: Any) -> None:
    refused = bungalow("stop", "-t", "1w", "web")
    assert (refused.code, refused.err) == (
        1, "error: The --timeout '1w' is longer than 1h; give 1h or less.\n"
    )  # fmt: skip
    assert daemon.requests == []


@pytest.fixture
def data() -> Iterator[DataDir]:
    with short_data_dir() as data:
        yield data


@pytest.fixture
def stdin_text(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make our stdin a pipe holding ``text``, then end of input."""

    def feed(text: bytes) -> None:
        read_end, write_end = os.pipe()
        os.write(write_end, text)
        os.close(write_end)
        monkeypatch.setattr(sys, "stdin", os.fdopen(read_end, "r"))

    return feed


def _exec_then(ending: dict[str, Any]) -> Any:
    """An interactive command that echoes stdin until its end, then ends with ``ending``."""

    def command(connection: ServerConnection) -> None:
        request = json.loads(connection.recv())
        assert request["argv"] == ["tr", "a-z", "A-Z"] and request["stdin"] == ""
        for message in connection:
            if isinstance(message, bytes):
                connection.send(json.dumps(answers.output("stdout", message.upper())))
            elif json.loads(message)["type"] == "stdin_close":
                connection.send(json.dumps(ending))
                return

    return command


@pytest.mark.parametrize(
    ("ending", "status", "said"),
    [
        (exit_event(0), 0, ""),
        (exit_event(None, signal=9), 137, ""),
        (exit_event(None, signal=9, timed_out=True), 124,
         "error: The command ran past its timeout of 2s and was killed.\n"),
    ],
)  # fmt: skip
def test_exec_i_gives_the_same_statuses_and_sentence_as_exec(
    bungalow: Any, data: DataDir, stdin_text: Any, ending: dict[str, Any], status: int, said: str
) -> None:
    stdin_text(b"shout\n")
    with websocket_daemon(data, _exec_then(ending)) as paths:
        ran = bungalow("exec", "-i", "web", "--timeout", "2", "--", "tr", "a-z", "A-Z", data=data)
    assert (ran.code, ran.out, ran.err) == (status, "SHOUT\n", said)
    assert paths == ["/v1/vms/web/exec/ws"]


def test_a_refused_interactive_exec_is_one_sentence(
    bungalow: Any, data: DataDir, stdin_text: Any
) -> None:
    def refuse(connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "error", "code": "vm_not_found",
                                    "message": "There is no VM named web."}))  # fmt: skip
        connection.close(4404)

    stdin_text(b"")
    with websocket_daemon(data, refuse):
        ran = bungalow("exec", "-i", "web", "--", "sh", data=data)
    assert (ran.code, ran.out, ran.err) == (125, "", "error: There is no VM named web.\n")
    with websocket_daemon(data, refuse, answers.refuse_handshake(403)):
        old = bungalow("exec", "-i", "web", "--", "sh", data=data)
    assert old.code == 125 and old.err.startswith("error: bungalowd refused an interactive command")
    assert len(old.err.splitlines()) == 1


# -- snapshots, projects, costs, metrics, the host -----------------------------------------------


def test_snapshot_ls_and_create(daemon: Daemon, bungalow: Any) -> None:
    now = time.time()
    snaps = [
        answers.snapshot_info("before", created=now - 300, used_by=["twin"]),
        answers.snapshot_info("disk", kind="disk", size=4 << 20, created=now - 10),
    ]
    daemon.on("GET", "/v1/vms/web/snapshots", json_answer(snaps))
    listing = bungalow("snapshot", "ls", "web")
    assert listing.rows() == [
        ["NAME", "KIND", "SIZE", "AGE", "USED", "BY"],
        ["before", "full", "96M", "5m", "twin"],
        ["disk", "disk", "4M", "10s"],
    ]
    daemon.on("POST", "/v1/vms/web/snapshots", json_answer(answers.snapshot_info("s1"), 201))
    made = bungalow("snapshot", "create", "web", "s1")
    assert made.out == "snapshot s1 of web saved (memory, devices and disk, 96M)\n"
    assert daemon.body("POST", "/v1/vms/web/snapshots") == {"name": "s1"}


def test_snapshot_restore_refused_is_one_sentence(daemon: Daemon, bungalow: Any) -> None:
    refused = ConflictError("The snapshot s1 is used by twin; remove those first.")
    daemon.on("DELETE", "/v1/vms/web/snapshots/s1", error_answer(refused))
    removed = bungalow("snapshot", "rm", "web", "s1")
    assert (removed.code, removed.err) == (1, f"error: {refused.message}\n")


def test_project_ls_shows_use_against_quota(daemon: Daemon, bungalow: Any) -> None:
    projects = [answers.project_info("team-a", vcpus=4, memory=2 << 30),
                answers.project_info("team-b")]  # fmt: skip
    daemon.on("GET", "/v1/projects", json_answer(projects))
    listing = bungalow("project", "ls")
    assert listing.rows() == [
        ["PROJECT", "VMS", "VCPUS", "MEMORY", "DISK"],
        ["team-a", "2/-", "2/4", "1G/2G", "8G/-"],
        ["team-b", "2/-", "2/-", "1G/-", "8G/-"],
    ]


def test_project_create_and_rm_send_what_was_given(daemon: Daemon, bungalow: Any) -> None:
    made = {**answers.project_info("team-c"), "token": "bgw_secret"}
    daemon.on("POST", "/v1/projects", json_answer(made, 201))
    daemon.on("DELETE", "/v1/projects/team-c", httpx.Response(204))
    assert bungalow("project", "create", "team-c", "--max-vms", "3").out == "bgw_secret\n"
    assert daemon.body("POST", "/v1/projects") == {"name": "team-c", "max_vms": 3}
    assert bungalow("project", "rm", "team-c", "--orphan-vms").out == "project team-c is removed\n"
    (removal,) = daemon.sent("DELETE", "/v1/projects/team-c")
    assert dict(removal.url.params) == {"orphan_vms": "true"}


def test_cost_shows_rows_a_total_and_the_range(daemon: Daemon, bungalow: Any) -> None:
    report = answers.cost_report()
    daemon.on("GET", "/v1/costs", json_answer(report))
    shown = bungalow("cost", "--since", "2h")
    rows = shown.rows()
    assert rows[0] == ["VM", "RUNNING", "H", "STOPPED", "H", "CPU", "MEMORY", "DISK", "TOTAL"]
    assert rows[1] == ["web", "2.00", "0.50", "0.2500", "0.1250", "0.1250", "0.5000"]
    assert rows[2] == ["old", "(removed)", "2.00", "0.50", "0.1250", "0.0625", "0.0625", "0.2500"]
    assert rows[3] == ["total", "2.00", "0.50", "0.3750", "0.1875", "0.1875", "0.7500"]
    assert shown.out.splitlines()[-1].startswith("0.7500 USD from ")
    assert dict(daemon.requests[-1].url.params) == {"by": "vm", "since": "2h"}
    assert json.loads(bungalow("cost", "--json").out) == report


def test_top_once_prints_one_table(daemon: Daemon, bungalow: Any) -> None:
    noisy = answers.vm_metrics("hog", noisy=True, noisy_for=["cpu"], throttled=["cpu"])
    daemon.on("GET", "/v1/metrics", json_answer([answers.vm_metrics("web"), noisy,
                                                 answers.vm_metrics("new", rates={})]))  # fmt: skip
    shown = bungalow("top", "--once")
    assert shown.code == 0
    assert shown.rows() == [
        ["VM", "CPU", "STEAL", "MEMORY", "DISK", "RD/s", "DISK", "WR/s", "IOPS", "NET", "RX/s",
         "NET", "TX/s"],
        ["web", "25%", "2%", "300M", "2K", "1M", "10", "512B", "0"],
        ["hog", "25%", "2%", "300M", "2K", "1M", "10", "512B", "0", "NOISY", "cpu", "held", "cpu"],
        ["new", "..."],
    ]  # fmt: skip


def test_host_info_says_what_the_host_has_and_holds(daemon: Daemon, bungalow: Any) -> None:
    daemon.on("GET", "/v1/host", json_answer(answers.host_info()))
    lines = bungalow("host", "info").out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "host", "version", "qemu", "accelerator", "why", "cpus", "memory", "disk", "vms",
        "firmware", "firmware", "firmware", "x86_64", "aarch64",
        "guests", "shared", "returned", "overhead", "ksm",
    ]  # fmt: skip
    assert lines[14].split(maxsplit=1)[1] == (
        "1G allocated, 400M taken by their QEMUs (PSS), of which 300M guest RAM; guests use 120M"
    )
    assert (
        lines[15].split(maxsplit=1)[1] == "90M saved by KSM on this host (88M net of its metadata)"
    )
    assert lines[16].split(maxsplit=1)[1] == "- (not reported)"
    assert lines[17].split(maxsplit=1)[1] == "50M per VM (median QEMU overhead)"
    assert lines[18].split(maxsplit=1)[1] == (
        "on, turned on by bungalow for 1 daemon(s)' VMs; scans at the kernel's advisor "
        "(scan-time), 3 full scans (memory.ksm = auto); ksmd used 12.5 s of CPU"
    )
    # The host's own reason is said once; an architecture's own, and what is missing, on its line.
    assert lines[12].split(maxsplit=1)[1] == "qemu-system-x86_64, tcg, images build"
    assert lines[13].split(maxsplit=1)[1] == (
        "qemu-system-aarch64 not installed (apt-get install qemu-system-arm)"
    )
    assert lines[3].split(maxsplit=1)[1] == "tcg (probe 1.5 ms)"
    assert lines[9].split(maxsplit=2)[1:] == ["bios", "/usr/share/seabios/bios-256k.bin"]
    assert lines[10].split(maxsplit=2)[2] == (
        "/usr/share/OVMF/OVMF_CODE_4M.fd + /usr/share/OVMF/OVMF_VARS_4M.fd"
    )
    assert lines[11].split(maxsplit=2)[2] == "not installed (apt-get install ovmf)"
    assert lines[5].split(maxsplit=1)[1] == ("2 x 4 = 8 vCPUs: 2 allocated to running VMs, 6 free")
    assert lines[7].split(maxsplit=1)[1] == (
        "100G x 1: 8G allocated, 92G free (60G free now in /var/lib/bungalow)"
    )


def test_overhead_prints_each_vm_and_the_hosts_sums(daemon: Daemon, bungalow: Any) -> None:
    daemon.on("GET", "/v1/overhead", json_answer(answers.overhead()))
    shown = bungalow("overhead")
    assert shown.code == 0
    assert shown.rows()[:3] == [
        ["VM", "MEMORY", "GUEST", "USES", "QEMU", "PSS", "GUEST", "RAM", "QEMU", "OVERHEAD", "KSM",
         "SHARED", "GIVEN", "BACK"],
        ["web", "512M", "60M", "200M", "150M", "50M", "80M", "-"],
        ["db", "512M", "-", "200M", "150M", "50M", "-", "-"],
    ]  # fmt: skip
    # db gave nothing back that is known: a line says what "-" may mean.
    assert " ".join(shown.rows()[3]).startswith("GIVEN BACK - : no balloon, no report yet, or")
    assert [row[0] for row in shown.rows()[4:]] == [
        "guests", "shared", "returned", "overhead", "ksm"
    ]  # fmt: skip
    as_json = bungalow("overhead", "--json")
    assert json.loads(as_json.out) == answers.overhead()


# -- conventions: pipes, --json, --version, filters, several names, rm -f, fork, logs -f --------


def test_a_table_in_a_pipe_is_plain_columns_never_wrapped(
    daemon: Daemon, bungalow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal's width must not matter in a pipe
    output._console.cache_clear()
    daemon.on("GET", "/v1/vms", json_answer([vm_info("web", created=time.time() - 7200)]))
    lines = bungalow("ls").out.splitlines()
    assert len(lines) == 2
    assert lines[0].split() == [
        "NAME", "STATE", "IMAGE", "CPUS", "MEMORY", "DISK", "PORTS", "AGE", "EXPIRES", "COST"
    ]  # fmt: skip
    assert lines[1].endswith("0.0412 USD") and lines[1].index("running") == lines[0].index("STATE")


def test_plain_table_pads_columns_to_the_widest_cell_and_trims_the_end() -> None:
    assert output.plain_table(["NAME", "STATE", "NOTE"], [["a-long-name", "up", ""]]) == [
        "NAME          STATE   NOTE",
        "a-long-name   up",
    ]


@pytest.mark.parametrize(
    ("argv", "route", "answer"),
    [
        (["ls"], "/v1/vms", [vm_info("web")]),
        (["image", "ls"], "/v1/images", [answers.image_info()]),
        (["snapshot", "ls", "web"], "/v1/vms/web/snapshots", [answers.snapshot_info()]),
        (["project", "ls"], "/v1/projects", [answers.project_info()]),
        (["host", "info"], "/v1/host", answers.host_info()),
        (["top"], "/v1/metrics", [answers.vm_metrics()]),
    ],
)
def test_json_prints_the_daemons_answer_unchanged(
    daemon: Daemon, bungalow: Any, argv: list[str], route: str, answer: Any
) -> None:
    daemon.on("GET", route, json_answer(answer))
    shown = bungalow(*argv, "--json")
    assert (shown.code, shown.err) == (0, "")
    assert json.loads(shown.out) == answer


def test_version_and_a_daemon_of_another_version(daemon: Daemon, bungalow: Any) -> None:
    from bungalow import __version__

    assert bungalow("--version").out == f"bungalow {__version__}\n"
    assert daemon.requests == []
    daemon.on("GET", "/v1/host", json_answer({**answers.host_info(), "version": "0.0.9"}))
    shown = bungalow("host", "info")
    assert shown.code == 0
    assert shown.out.splitlines()[1].split(maxsplit=1)[1] == (
        f"0.0.9 (bungalowd), {__version__} (this CLI)"
    )
    assert shown.err == (
        f"warning: bungalowd runs bungalow 0.0.9 but this CLI is {__version__}; end that "
        "bungalowd (its VMs keep running) and the next command starts this version.\n"
    )


def test_ls_filters_are_sent_to_the_daemon(daemon: Daemon, bungalow: Any) -> None:
    daemon.on("GET", "/v1/vms", json_answer([vm_info("web")]))
    listed = bungalow("ls", "-q", "--project", "p1", "--state", "running", "-s", "paused",
                      "--label", "team=x", "-l", "ci")  # fmt: skip
    assert (listed.code, listed.out) == (0, "web\n")
    assert daemon.requests[-1].url.params.multi_items() == [
        ("state", "running"), ("state", "paused"), ("label", "team=x"), ("label", "ci"),
        ("project", "p1"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "method", "path", "said"),
    [
        ("start", "POST", "/start", "running"),
        ("stop", "POST", "/stop", "stopped"),
        ("pause", "POST", "/pause", "paused"),
        ("resume", "POST", "/resume", "running"),
        ("suspend", "POST", "/suspend", "suspended"),
    ],
)
def test_verbs_on_several_vms_do_what_they_can_then_exit_1(
    daemon: Daemon, bungalow: Any, verb: str, method: str, path: str, said: str
) -> None:
    for name in ("a", "c"):
        daemon.on(method, f"/v1/vms/{name}{path}", json_answer(vm_info(name)))
    refused = ConflictError(f"Cannot {verb}: the VM b is in the way; try later.")
    daemon.on(method, f"/v1/vms/b{path}", error_answer(refused))
    done = bungalow(verb, "a", "b", "c")
    assert (done.code, done.out) == (1, f"a is {said}\nc is {said}\n")
    assert done.err == f"error: {refused.message}\n"
    alone = bungalow(verb, "b")
    assert (alone.code, alone.out, alone.err) == (1, "", f"error: {refused.message}\n")


@pytest.fixture
def terminal_stdin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make our stdin a terminal (a pseudo-terminal) and give a function typing on it."""
    leader, follower = os.openpty()
    stdin = os.fdopen(follower, "r")
    monkeypatch.setattr(sys, "stdin", stdin)
    yield lambda text: os.write(leader, text.encode())
    stdin.close()
    os.close(leader)


def test_rm_asks_about_a_running_vm_on_a_terminal_and_f_does_not(
    daemon: Daemon, bungalow: Any, terminal_stdin: Any
) -> None:
    daemon.on("GET", "/v1/vms/web", json_answer(vm_info("web")))
    daemon.on("GET", "/v1/vms/old", json_answer(vm_info("old", state="stopped")))
    for name in ("web", "old"):
        daemon.on("DELETE", f"/v1/vms/{name}", httpx.Response(204))
    terminal_stdin("n\n")
    kept = bungalow("rm", "web", "old")
    assert kept.code == 0
    assert kept.out.startswith("web is running; end it and delete it with its disk? [y/N]: ")
    assert kept.out.endswith("web is kept\nold is removed\n")
    assert [r.url.path for r in daemon.sent("DELETE", "/v1/vms/web")] == []
    forced = bungalow("rm", "-f", "web")
    assert (forced.code, forced.out) == (0, "web is removed\n")
    assert len(daemon.sent("DELETE", "/v1/vms/web")) == 1
    assert "--force" in bungalow("rm", "--help").out


def test_fork_prints_the_new_vms(daemon: Daemon, bungalow: Any) -> None:
    forks = [vm_info("web-f1"), vm_info("web-f2")]
    daemon.on("POST", "/v1/vms/web/fork", json_answer(forks, 201))
    made = bungalow("fork", "web", "-n", "2")
    assert (made.code, made.out) == (0, "web-f1\nweb-f2\n")
    assert daemon.body("POST", "/v1/vms/web/fork") == {"count": 2}
    refused = bungalow("fork", "web", "-n", "0")
    assert refused.code == 1
    assert (
        refused.err
        == "error: The --count '0' is not a whole number of 1 or more; give one such as 10.\n"
    )


def test_logs_f_prints_the_stream_as_it_comes(daemon: Daemon, bungalow: Any) -> None:
    daemon.on("GET", "/v1/vms/web/logs", httpx.Response(200, content=b"boot\nlogin: "))
    followed = bungalow("logs", "-f", "-n", "5", "web")
    assert (followed.code, followed.out) == (0, "boot\nlogin: ")
    assert dict(daemon.requests[-1].url.params) == {"tail": "5", "follow": "true"}


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (["stop", "-t", "1h", "web"], ("POST", "/v1/vms/web/stop", {"timeout": 3600.0})),
        (["stop", "-t", "0", "web"], ("POST", "/v1/vms/web/stop", {"timeout": 0.0})),
    ],
)
def test_durations_take_every_unit(
    daemon: Daemon, bungalow: Any, argv: list[str], sent: tuple[str, str, Any]
) -> None:
    method, path, body = sent
    daemon.on(method, path, json_answer(vm_info("web", state="stopped")))
    assert bungalow(*argv).code == 0
    assert daemon.body(method, path) == body


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["stop", "-t", "soon", "web"],
         "The --timeout 'soon' is not a duration; write it like 30s, 10m or 2h."),
        (["top", "-n", "0"], "The --interval must be positive, such as 30m or 2h; got '0'."),
        (["events", "--since", "yesterday"], "--since"),
        (["cost", "--until", "later"], "--until"),
    ],
)  # fmt: skip
def test_a_bad_duration_or_moment_is_one_sentence_before_any_request(
    daemon: Daemon, bungalow: Any, argv: list[str], said: str
) -> None:
    refused = bungalow(*argv)
    assert refused.code == 1 and refused.out == ""
    assert refused.err.startswith("error: ") and said in refused.err
    assert len(refused.err.splitlines()) == 1
    assert daemon.requests == []


def test_completion_without_a_daemon_offers_nothing_and_starts_none(
    monkeypatch: pytest.MonkeyPatch, data: DataDir
) -> None:
    from bungalow.cli import complete

    monkeypatch.setenv("BUNGALOW_HOME", str(data.root))
    assert complete.vm_names("") == [] and complete.image_names("deb") == []
    assert not data.socket.exists()


def test_set_with_nothing_to_set_says_so_and_asks_nothing(daemon: Daemon, bungalow: Any) -> None:
    result = bungalow("set", "web")
    assert result.code == 1 and not result.out
    assert result.err.strip().endswith(
        "Nothing to change on web: give a limit or floor, such as --cpu-weight 200 or "
        "--memory-min 512M (bungalow set --help lists them)."
    )
    assert not daemon.requests
