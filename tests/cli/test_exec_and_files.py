"""One running VM, many things done in it through the CLI: exec, cp, shell, logs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BUNGALOW, Env
from tests.support import free_port, http_get, wait_until

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def web_port() -> int:
    """The host port forwarded to the guest's port 8000 (chosen when the module starts)."""
    return free_port()


@pytest.fixture(scope="module")
def vm(bw_module: Env, web_port: int) -> str:
    bw_module.run("launch", "box", "--memory", "512M", "--disk", "6G", "-p", f"{web_port}:8000")
    return "box"


def test_port_forward_reaches_a_server_in_the_guest(bw_module: Env, vm: str, web_port: int) -> None:
    bw_module.run("exec", vm, "--", "sh", "-c", "echo served > /tmp/index.html")
    bw_module.run(
        "exec", vm, "-w", "/tmp", "--",
        "sh", "-c", "setsid -f python3 -m http.server 8000 >/dev/null 2>&1",
    )  # fmt: skip
    url = f"http://127.0.0.1:{web_port}/index.html"
    assert wait_until("the guest's web server", lambda: http_get(url)) == b"served\n"


def test_exec_prints_output_and_passes_the_exit_code(bw_module: Env, vm: str) -> None:
    result = bw_module.run(
        "exec", vm, "--", "sh", "-c", "uname -s; echo oops >&2; exit 3", check=False
    )
    assert result.returncode == 3
    assert result.stdout == "Linux\n"
    assert "oops" in result.stderr


def test_exec_output_streams_before_the_command_ends(bw_module: Env, vm: str) -> None:
    started = time.monotonic()
    process = subprocess.Popen(
        [*BUNGALOW, "exec", vm, "--", "sh", "-c", "echo first; sleep 4; echo second"],
        env=bw_module.env,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    first_at = time.monotonic() - started
    rest = process.stdout.read()
    process.wait(timeout=60)
    total = time.monotonic() - started
    assert first == b"first\n"
    assert rest == b"second\n"
    assert total - first_at > 3, "the first line arrived only when the command ended"


def test_exec_timeout_kills_the_command_and_says_so(bw_module: Env, vm: str) -> None:
    result = bw_module.run("exec", vm, "--timeout", "1", "--", "sleep", "30", check=False)
    assert result.returncode == 124
    assert "timeout" in result.stderr
    leftover = bw_module.run("exec", vm, "--", "sh", "-c", "pgrep -x sleep || true")
    assert leftover.stdout.strip() == ""


def test_exec_env_cwd_user_and_stdin(bw_module: Env, vm: str) -> None:
    result = bw_module.run(
        "exec", vm, "-e", "GREETING=hi", "-w", "/tmp", "-u", "nobody", "--",
        "sh", "-c", 'echo "$GREETING $(pwd) $(id -un)"',
    )  # fmt: skip
    assert result.stdout == "hi /tmp nobody\n"
    piped = bw_module.run("exec", "-i", vm, "--", "tr", "a-z", "A-Z", input=b"shout\n")
    assert piped.stdout == "SHOUT\n"


def test_any_guest_user_can_resolve_names(bw_module: Env, vm: str) -> None:
    for path in ("/etc/resolv.conf", "/etc/hosts"):
        result = bw_module.run("exec", vm, "-u", "nobody", "--", "cat", path, check=False)
        assert result.returncode == 0, result.stderr
    lookup = bw_module.run("exec", vm, "-u", "nobody", "--", "getent", "hosts", "localhost")
    assert "127.0.0.1" in lookup.stdout or "::1" in lookup.stdout


def test_apt_installs_a_package_in_the_guest(bw_module: Env, vm: str) -> None:
    result = bw_module.run(
        "exec", vm, "-e", "DEBIAN_FRONTEND=noninteractive", "--", "sh", "-c",
        "apt-get update -q && apt-get install -y -q --no-install-recommends jq",
        check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = bw_module.run("exec", vm, "--", "sh", "-c", "echo '{\"a\": 42}' | jq .a")
    assert out.stdout == "42\n"


def test_exec_of_a_missing_program_fails_clearly(bw_module: Env, vm: str) -> None:
    result = bw_module.run("exec", vm, "--", "no-such-program", check=False)
    assert result.returncode == 127
    assert "no-such-program" in result.stderr


def test_cp_files_and_folders_both_ways(bw_module: Env, vm: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<h1>hello</h1>\n")
    (site / "css" / "main.css").write_text("body{}\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    bw_module.run("exec", vm, "--", "mkdir", "-p", "/var/www/html")
    bw_module.run("cp", str(site), f"{vm}:/var/www/html")
    bw_module.run("cp", str(big), f"{vm}:/root/big.bin")
    listing = bw_module.run("exec", vm, "--", "find", "/var/www/html/site", "-type", "f")
    assert sorted(listing.stdout.split()) == [
        "/var/www/html/site/css/main.css",
        "/var/www/html/site/index.html",
    ]
    back = tmp_path / "back"
    back.mkdir()
    bw_module.run("cp", f"{vm}:/var/www/html/site", str(back))
    bw_module.run("cp", f"{vm}:/root/big.bin", str(back / "big.bin"))
    assert (back / "site" / "index.html").read_text() == "<h1>hello</h1>\n"
    assert (back / "site" / "css" / "main.css").read_text() == "body{}\n"
    assert (back / "big.bin").read_bytes() == big.read_bytes()


def test_cp_of_a_missing_file_is_one_clear_sentence(
    bw_module: Env, vm: str, tmp_path: Path
) -> None:
    result = bw_module.run("cp", f"{vm}:/nope", str(tmp_path), check=False)
    assert result.returncode == 1
    assert "/nope" in result.stderr
    assert "Traceback" not in result.stderr


def test_ls_inspect_logs_and_host_info(bw_module: Env, vm: str) -> None:
    assert vm in bw_module.run("ls").stdout
    info = json.loads(bw_module.run("inspect", vm).stdout)
    assert info["state"] == "running"
    assert info["image"] == "debian-12"
    assert "bungalow-agent: ready" in bw_module.run("logs", vm).stdout
    host = bw_module.run("host", "info").stdout
    assert "tcg" in host
    assert "why" in host


def test_guest_is_the_requested_debian_with_grown_disk(bw_module: Env, vm: str) -> None:
    release = bw_module.run("exec", vm, "--", "cat", "/etc/os-release").stdout
    assert 'VERSION_ID="12"' in release
    df = bw_module.run("exec", vm, "--", "df", "-B1", "--output=size", "/").stdout.split()
    assert int(df[-1]) > 5 << 30
