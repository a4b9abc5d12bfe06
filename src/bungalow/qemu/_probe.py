"""Facts about the host CPU that only running code can tell: KVM speed and TSC rate.

``/dev/kvm`` existing says nothing about speed: under a nested, software KVM
guest kernel code is emulated one instruction at a time, about a thousand times
slower than hardware, and a Linux guest there is slower than plain TCG. The only
honest test is to run kernel-mode code and time it.

The second fact is the host's TSC rate. Under TCG a guest reads the host's TSC
unchanged, and a Linux guest on ``microvm`` (no HPET, no ACPI PM timer) can only
calibrate it against the PIT, which fails under host load and then hangs the
boot; the rate handed over as ``tsc_early_khz=`` avoids the calibration.

This module imports only the standard library and runs as a script
(``python -I -S _probe.py``) in a child process, so that a vCPU that never
comes back, or machine code the host refuses to run, can be killed without
harming the caller. It prints two JSON lines::

    {"kvm": {"ok": true, "ns_per_instruction": 880.0, "instructions": 20002}}
    {"tsc_khz": 2100000}

where a failed KVM probe reads ``{"ok": false, "reason": "<sentence fragment>"}``
and ``tsc_khz`` is null when neither KVM nor a measurement could tell.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import mmap
import os
import struct
import time

KVM_API_VERSION = 12

# ioctl numbers from <linux/kvm.h>: _IO(0xAE, nr) and _IOR/_IOW with the struct size.
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_RUN = 0xAE80
KVM_GET_REGS = 0x8090AE81
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84
KVM_GET_TSC_KHZ = 0xAEA3

KVM_EXIT_HLT = 5
KVM_EXIT_INTR = 10

REGS_FORMAT = "<18Q"  # rax rbx rcx rdx rsi rdi rsp rbp r8-r15 rip rflags
REGS_SIZE = struct.calcsize(REGS_FORMAT)
SEGMENT_FORMAT = "<QIH9Bx"  # base limit selector type present dpl db s l g avl unusable
SEGMENT_SIZE = struct.calcsize(SEGMENT_FORMAT)
SREGS_SIZE = 312
SREGS_CR0_OFFSET = 8 * SEGMENT_SIZE + 2 * 16
EXIT_REASON_OFFSET = 8  # struct kvm_run: two u8, six bytes of padding, then u32 exit_reason

GUEST_MEMORY_SIZE = 4 * 4096
CODE_ADDRESS = 0x1000
STACK_ADDRESS = 0x3000
CR0_PE = 1
RFLAGS_RESERVED = 0x2

WARMUP_ITERATIONS = 1_000
TIMED_ITERATIONS = 10_000

RDTSC_CODE = b"\x0f\x31\x48\xc1\xe2\x20\x48\x09\xd0\xc3"
TSC_WINDOW_SECONDS = 0.05


def loop_code(iterations: int) -> bytes:
    """``mov ecx, N; l: dec ecx; jnz l; hlt`` in 32-bit protected mode."""
    return b"\xb9" + struct.pack("<I", iterations) + b"\x49\x75\xfd\xf4"


def instructions_run(iterations: int) -> int:
    """mov, then dec and jnz per iteration, then hlt."""
    return 2 * iterations + 2


def flat_segment(selector: int, segment_type: int) -> bytes:
    """A 4 GiB ring-0 segment with base 0, as a flat protected-mode kernel uses."""
    return struct.pack(
        SEGMENT_FORMAT, 0, 0xFFFFFFFF, selector, segment_type, 1, 0, 1, 1, 0, 1, 0, 0
    )


def enter_protected_mode(vcpu_fd: int) -> None:
    """Flat 32-bit protected mode at CPL0; task and LDT registers keep their reset values."""
    sregs = bytearray(SREGS_SIZE)
    fcntl.ioctl(vcpu_fd, KVM_GET_SREGS, sregs)
    code = flat_segment(selector=0x08, segment_type=0xB)
    data = flat_segment(selector=0x10, segment_type=0x3)
    for index, segment in enumerate((code, data, data, data, data, data)):  # cs ds es fs gs ss
        sregs[index * SEGMENT_SIZE : (index + 1) * SEGMENT_SIZE] = segment
    (cr0,) = struct.unpack_from("<Q", sregs, SREGS_CR0_OFFSET)
    struct.pack_into("<Q", sregs, SREGS_CR0_OFFSET, cr0 | CR0_PE)
    fcntl.ioctl(vcpu_fd, KVM_SET_SREGS, bytes(sregs))


def set_entry(vcpu_fd: int) -> None:
    regs = [0] * 18
    regs[6] = STACK_ADDRESS  # rsp
    regs[16] = CODE_ADDRESS  # rip
    regs[17] = RFLAGS_RESERVED
    fcntl.ioctl(vcpu_fd, KVM_SET_REGS, struct.pack(REGS_FORMAT, *regs))


def run_to_halt(vcpu_fd: int, run_area: mmap.mmap) -> int:
    """Nanoseconds KVM_RUN took until the guest halted; retries exits caused by host signals."""
    started = time.perf_counter_ns()
    while True:
        try:
            fcntl.ioctl(vcpu_fd, KVM_RUN, 0)
        except InterruptedError:
            continue
        (reason,) = struct.unpack_from("<I", run_area, EXIT_REASON_OFFSET)
        if reason == KVM_EXIT_HLT:
            return time.perf_counter_ns() - started
        if reason != KVM_EXIT_INTR:
            raise ProbeFailure(f"the test guest stopped with KVM exit reason {reason}")


class ProbeFailure(Exception):
    """The probe could not run its guest; the message completes "KVM is not usable: ..."."""


def timed_loop(vcpu_fd: int, run_area: mmap.mmap, memory: mmap.mmap, iterations: int) -> int:
    code = loop_code(iterations)
    memory[CODE_ADDRESS : CODE_ADDRESS + len(code)] = code
    set_entry(vcpu_fd)
    elapsed = run_to_halt(vcpu_fd, run_area)
    regs = bytearray(REGS_SIZE)
    fcntl.ioctl(vcpu_fd, KVM_GET_REGS, regs)
    rcx = struct.unpack_from("<Q", regs, 2 * 8)[0] & 0xFFFFFFFF
    if rcx != 0:
        raise ProbeFailure("the test guest halted before finishing its loop")
    return elapsed


def add_memory(vm_fd: int, memory: mmap.mmap) -> None:
    address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    region = struct.pack("<IIQQQ", 0, 0, 0, len(memory), address)
    fcntl.ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, region)


def measure(kvm_fd: int) -> tuple[float, int | None]:
    """Best nanoseconds per instruction of the timed loop, and the vCPU's TSC rate in kHz.

    The warm-up run faults the guest pages in, which on hardware costs more than the loop.
    """
    if fcntl.ioctl(kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION:
        raise ProbeFailure("/dev/kvm speaks an unknown API version")
    vm_fd = fcntl.ioctl(kvm_fd, KVM_CREATE_VM, 0)
    memory = mmap.mmap(-1, GUEST_MEMORY_SIZE)
    add_memory(vm_fd, memory)
    vcpu_fd = fcntl.ioctl(vm_fd, KVM_CREATE_VCPU, 0)
    run_size = fcntl.ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0)
    run_area = mmap.mmap(vcpu_fd, run_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    enter_protected_mode(vcpu_fd)
    timed_loop(vcpu_fd, run_area, memory, WARMUP_ITERATIONS)
    best = min(timed_loop(vcpu_fd, run_area, memory, TIMED_ITERATIONS) for _ in range(2))
    try:
        tsc_khz: int | None = fcntl.ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0)
    except OSError:
        tsc_khz = None
    return best / instructions_run(TIMED_ITERATIONS), tsc_khz


def probe_kvm() -> tuple[dict[str, object], int | None]:
    try:
        kvm_fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return {"ok": False, "reason": "/dev/kvm is missing"}, None
    except OSError as error:
        return {
            "ok": False,
            "reason": f"/dev/kvm is not accessible ({os.strerror(error.errno or 0)})",
        }, None
    try:
        ns_per_instruction, tsc_khz = measure(kvm_fd)
    except ProbeFailure as failure:
        return {"ok": False, "reason": f"KVM is not usable: {failure}"}, None
    except OSError as error:
        name = errno.errorcode.get(error.errno or 0, str(error.errno))
        return {"ok": False, "reason": f"KVM is not usable: an ioctl failed with {name}"}, None
    result: dict[str, object] = {
        "ok": True,
        "ns_per_instruction": ns_per_instruction,
        "instructions": instructions_run(TIMED_ITERATIONS),
    }
    return result, tsc_khz


def measure_tsc_khz() -> int | None:
    """The host TSC rate, timed against CLOCK_MONOTONIC_RAW; None if the host forbids it.

    Python cannot read the TSC, so this maps ``rdtsc; shl rdx, 32; or rax, rdx; ret``
    into an executable page and calls it through ctypes. Hosts that refuse writable
    executable memory raise here, and the caller goes without the hint.
    """
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        return None
    page.write(RDTSC_CODE)
    read_tsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    tsc_start, clock_start = int(read_tsc()), time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
    time.sleep(TSC_WINDOW_SECONDS)
    tsc_end, clock_end = int(read_tsc()), time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
    return round((tsc_end - tsc_start) * 1_000_000 / (clock_end - clock_start))


def main() -> None:
    """Print the KVM verdict before touching executable memory, so a crash there loses nothing."""
    kvm, tsc_khz = probe_kvm()
    print(json.dumps({"kvm": kvm}), flush=True)
    if not tsc_khz:
        tsc_khz = measure_tsc_khz()
    print(json.dumps({"tsc_khz": tsc_khz}), flush=True)


if __name__ == "__main__":
    main()
