"""A pc VM's screen and keyboard on real TCG guests: screenshot, type, send-keys, vnc, and a
display that snapshots, suspends and clones.

One pc VM (``scr``: debian-12 on q35, direct kernel boot, the agent) and one micro VM are
booted for the module. The image's cloud kernel has no VGA console (its console is the
dummy one), so the guest draws on the screen itself, into the VGA text buffer at 0xB8000
through /dev/mem; keys are read back from a virtual terminal the guest switches to
(canonical mode for typed lines, the kernel's medium-raw mode for key codes).
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import Env
from tests.screens import VncRefused, lit_pixels, screenshot, vnc_login
from tests.support import wait_until

pytestmark = pytest.mark.vm

#: Writes argv[2] in white on blue on text row argv[1] of the VGA text buffer.
DRAW = """
import mmap, os, sys
fd = os.open("/dev/mem", os.O_RDWR | os.O_SYNC)
screen = mmap.mmap(fd, 4000, offset=0xB8000)
row, text = int(sys.argv[1]), sys.argv[2]
for column, char in enumerate(text):
    screen[(row * 80 + column) * 2 : (row * 80 + column) * 2 + 2] = bytes([ord(char), 0x1F])
"""

#: Switches to tty3 and writes what arrives to argv[2]: a line (``line``), or the first
#: six key codes in the kernel's medium-raw mode (``raw``), where ctrl-alt-delete is
#: not acted on. ``argv[2].ready`` appears once it reads.
READ_KEYS = """
import fcntl, os, sys, termios
VT_ACTIVATE, VT_WAITACTIVE, KDSKBMODE, K_XLATE, K_MEDIUMRAW = 0x5606, 0x5607, 0x4B45, 1, 2
mode, out = sys.argv[1], sys.argv[2]
tty = os.open("/dev/tty3", os.O_RDWR | os.O_NOCTTY)
console = os.open("/dev/tty0", os.O_RDWR | os.O_NOCTTY)
fcntl.ioctl(console, VT_ACTIVATE, 3)
fcntl.ioctl(console, VT_WAITACTIVE, 3)
termios.tcflush(tty, termios.TCIFLUSH)
data = b""
if mode == "raw":
    cooked = termios.tcgetattr(tty)
    raw = cooked[:]
    raw[0] &= ~(termios.IXON | termios.ICRNL)
    raw[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG)
    termios.tcsetattr(tty, termios.TCSANOW, raw)
    fcntl.ioctl(tty, KDSKBMODE, K_MEDIUMRAW)
try:
    open(out + ".ready", "w").close()
    while (b"\\n" not in data) if mode == "line" else (len(data) < 6):
        data += os.read(tty, 1024)
finally:
    if mode == "raw":
        fcntl.ioctl(tty, KDSKBMODE, K_XLATE)
        termios.tcsetattr(tty, termios.TCSANOW, cooked)
open(out + ".part", "wb").write(data)
os.rename(out + ".part", out)
"""


def _sh(bw: Env, vm: str, script: str) -> str:
    return bw.run("exec", vm, "--", "sh", "-c", script).stdout


@pytest.fixture(scope="module")
def scr(bw_module: Env, tmp_path_factory: pytest.TempPathFactory) -> Env:
    bw_module.run("launch", "scr", "--profile", "pc")
    bw_module.run("launch", "mic")
    scripts = tmp_path_factory.mktemp("scripts")
    for name, text in (("draw.py", DRAW), ("read_keys.py", READ_KEYS)):
        (scripts / name).write_text(text)
        bw_module.run("cp", str(scripts / name), f"scr:/root/{name}")
    return bw_module


def _start_reader(bw: Env, mode: str, out: str) -> None:
    _sh(bw, "scr", f"rm -f {out}*; python3 /root/read_keys.py {mode} {out} >{out}.err 2>&1 &")

    def reading() -> bool:
        answer = _sh(bw, "scr", f"test -e {out}.ready && echo ready || cat {out}.err")
        assert answer in ("ready\n", ""), f"the guest's reader failed: {answer}"
        return answer == "ready\n"

    wait_until(f"the guest's {mode} reader", reading)


def test_a_screenshot_is_a_png_of_the_display_that_follows_what_the_guest_draws(
    scr: Env,
) -> None:
    before = screenshot(scr, "scr")
    assert before.size == (720, 400)  # VGA text mode, 80x25 cells of 9x16 pixels
    assert lit_pixels(before) > 0  # SeaBIOS's banner at least
    bw_run = scr.run("exec", "scr", "--", "python3", "/root/draw.py", "12", "DRAWN BY THE GUEST")
    assert bw_run.returncode == 0
    after = screenshot(scr, "scr")
    assert lit_pixels(after) > lit_pixels(before) + 18 * 9 * 16 // 2
    band = (0, 12 * 16, 18 * 9, 13 * 16)  # the cells drawn into
    assert after.crop(band).tobytes() != before.crop(band).tobytes()
    assert after.crop(band).getpixel((1, 1)) == (0, 0, 168)  # VGA blue (its DAC has 6 bits)
    scr.run("pause", "scr")
    try:  # a paused VM's screen is read as it was left (the cursor blinks on, QEMU's own)
        assert screenshot(scr, "scr").crop(band).tobytes() == after.crop(band).tobytes()
    finally:
        scr.run("resume", "scr")


def test_typed_text_arrives_in_the_guest_as_typed(scr: Env) -> None:
    _start_reader(scr, "line", "/root/typed")
    text = 'echo hi; Ls -la ~/x_Y+1 | grep "A&B" > /tmp/o.txt'
    scr.run("type", "scr", text + "\\n")
    got = wait_until("the typed line", lambda: _sh(scr, "scr", "cat /root/typed 2>/dev/null; true"))
    assert got == text + "\n", _sh(scr, "scr", "cat /root/typed.err")


def test_ctrl_alt_delete_reaches_the_guests_keyboard(scr: Env) -> None:
    _start_reader(scr, "raw", "/root/codes")
    scr.run("send-keys", "scr", "ctrl-alt-delete")
    codes = wait_until(
        "the key codes", lambda: _sh(scr, "scr", "od -An -tx1 /root/codes 2>/dev/null; true")
    )
    # Linux key codes: ctrl 29, alt 56, delete 111 pressed, then released (| 0x80).
    assert codes.split()[:3] == ["1d", "38", "6f"]
    assert sorted(codes.split()[3:]) == ["9d", "b8", "ef"]


def test_vnc_is_one_time_and_refuses_a_wrong_password(scr: Env) -> None:
    first = json.loads(scr.run("vnc", "scr", "--json").stdout)
    assert first["url"] == f"vnc://127.0.0.1:{first['port']}" and len(first["password"]) == 8
    with pytest.raises(VncRefused):
        vnc_login(("127.0.0.1", first["port"]), first["password"][::-1] + "x")
    with pytest.raises(ConnectionRefusedError):  # used once: nobody listens any more
        vnc_login(("127.0.0.1", first["port"]), first["password"])
    second = json.loads(scr.run("vnc", "scr", "--json").stdout)
    session = vnc_login(("127.0.0.1", second["port"]), second["password"])
    assert (session.width, session.height, session.name) == (720, 400, "QEMU (scr)")
    assert session.first_message == 0  # a FramebufferUpdate
    # Once that viewer has left, its password lets nobody in, even on QEMU's own socket.
    (vnc_socket,) = scr.home.glob("vms/*/run/vnc.sock")  # the micro VM has none

    def refused() -> bool:
        try:
            vnc_login(vnc_socket, second["password"])
        except VncRefused:
            return True
        return False

    wait_until("the password to expire", refused)


def test_a_micro_vm_and_bad_keys_are_refused_with_a_sentence(scr: Env) -> None:
    for command in (
        ["screenshot", "mic", "x.png"],
        ["vnc", "mic"],
        ["send-keys", "mic", "ret"],
        ["type", "mic", "hi"],
    ):
        result = scr.run(*command, check=False)
        assert result.returncode == 1
        assert "the VM mic is a micro VM, which has no display" in result.stderr
    wrong = scr.run("send-keys", "scr", "ctrl-foo", check=False)
    assert wrong.returncode == 1 and "'foo' in 'ctrl-foo' is not a key" in wrong.stderr
    accent = scr.run("type", "scr", "café", check=False)
    assert accent.returncode == 1 and "'é' (position 4) cannot be typed" in accent.stderr


def test_the_screen_survives_snapshot_restore_suspend_and_clone_and_the_listener_goes_with_the_vm(
    scr: Env,
) -> None:
    band = (0, 20 * 16, 20 * 9, 21 * 16)

    def row_20() -> bytes:
        return screenshot(scr, "scr").crop(band).tobytes()

    scr.run("exec", "scr", "--", "python3", "/root/draw.py", "20", "AT THE SNAPSHOT     ")
    drawn = row_20()
    scr.run("snapshot", "create", "scr", "drawn")
    scr.run("exec", "scr", "--", "python3", "/root/draw.py", "20", "DRAWN AFTERWARDS    ")
    assert row_20() != drawn
    scr.run("snapshot", "restore", "scr", "drawn")
    assert row_20() == drawn  # the VGA's memory is in the snapshot's device state
    scr.run("suspend", "scr")
    scr.run("start", "scr")
    assert row_20() == drawn
    scr.run("clone", "scr", "twin")
    assert screenshot(scr, "twin").crop(band).tobytes() == drawn
    endpoint = json.loads(scr.run("vnc", "twin", "--json").stdout)
    scr.run("rm", "-f", "twin")
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", endpoint["port"]), timeout=10),
    ):
        pass
