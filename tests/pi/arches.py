"""The two Raspberry Pi OS userlands the test emulates, and what the install must give on each."""

from __future__ import annotations

from dataclasses import dataclass

# One processor's lines of a Raspberry Pi 4 (BCM2711, Cortex-A72 r0p3) /proc/cpuinfo, as the 64-bit
# and the 32-bit (ARMv7) kernels print them, then the board lines that follow the processors.
_A72_AARCH64 = """\
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
_A72_ARMV7 = """\
model name\t: ARMv7 Processor rev 3 (v7l)
BogoMIPS\t: 108.00
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32
CPU implementer\t: 0x41
CPU architecture: 7
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
_PI4_BOARD = "Hardware\t: BCM2711\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"


@dataclass(frozen=True)
class Arch:
    """A Debian architecture emulated with qemu-user, standing in for one flavour of Raspberry Pi OS."""

    name: str  # Debian's name: debootstrap --arch
    pi_os: str  # what it stands for, for the report
    qemu: str  # the qemu-user-static binary (binfmt runs it; copied into the rootfs too)
    machine: str  # `uname -m` inside: what install.sh and pip's platform_machine marker see
    qemu_cpu: str  # QEMU_CPU: a pinned CPU model (qemu's default one made LiteRT's int8 output garbage)
    runtime: str  # the TFLite runtime pyproject.toml must pick here, as `edgetag models` names it
    processor: str  # one processor's /proc/cpuinfo lines

    def cpuinfo(self, cpus: int) -> str:
        """A Pi 4 /proc/cpuinfo with ``cpus`` processors, bind-mounted over the emulated one.

        LiteRT and tflite-runtime detect the CPU from /proc/cpuinfo and /sys; under qemu-user they
        would read the x86 host's, which is what made them crash or pick wrong kernels.
        """
        blocks = [f"processor\t: {index}\n{self.processor}" for index in range(cpus)]
        return "\n".join([*blocks, _PI4_BOARD])


ARCHES: dict[str, Arch] = {
    "arm64": Arch(
        name="arm64",
        pi_os="Raspberry Pi OS Bookworm 64-bit",
        qemu="qemu-aarch64-static",
        machine="aarch64",
        qemu_cpu="cortex-a72",
        runtime="ai-edge-litert",
        processor=_A72_AARCH64,
    ),
    "armhf": Arch(
        name="armhf",
        pi_os="Raspberry Pi OS Bookworm 32-bit",
        qemu="qemu-arm-static",
        machine="armv7l",
        # qemu-arm has no Cortex-A72 model; the Cortex-A15 is an ARMv7 core with the same NEON and
        # VFPv4 as a Pi 2/3/4 running 32-bit code (cortex-a7 and max gave identical tags).
        qemu_cpu="cortex-a15",
        runtime="tflite-runtime",
        processor=_A72_ARMV7,
    ),
}
