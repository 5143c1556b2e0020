"""CPU numerics profiles: the kernel choices that decide a run's floating-point rounding.

fp32 results move with the instruction set that ATen, MKL and oneDNN dispatch to and with the number
of intra-op threads a reduction is split over.  `portable` pins all of them, so the same lock gives the
same bytes on any x86-64 CPU with AVX2; `native` leaves them to the machine and the environment (faster
on AVX512 CPUs, bytes follow the CPU kind); `auto` (the default) is portable on machines without a GPU
and native on GPU machines, whose results come from GPU kernels the profile does not pin.  The settings
are environment variables read when torch and its libraries load, so `apply` must run before torch is
imported; worker processes (`launch`) inherit them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from icl_bench.core.errors import UsageError

THREADS = 2  # intra-op threads of the portable profile: a reduction's split is part of its rounding
PROFILES: dict[str, dict[str, str]] = {
    "portable": {
        "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels
        "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: one code path
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's JIT kernels
        "OMP_NUM_THREADS": str(THREADS),
        "MKL_NUM_THREADS": str(THREADS),
    },
    "native": {},
}
DEFAULT = "auto"
CHOICES = ("auto", *PROFILES)
VARIABLES = tuple(PROFILES["portable"])
GPU_DEVICES = ("/dev/nvidiactl", "/dev/kfd")  # CUDA's and ROCm's control devices: a GPU machine


def resolve(profile: str) -> str:
    """`auto` -> `native` on a GPU machine (one of GPU_DEVICES exists), else `portable`; others as given."""
    if profile == "auto":
        return "native" if any(os.path.exists(device) for device in GPU_DEVICES) else "portable"
    return profile


def apply(profile: str) -> None:
    """Put `profile`'s settings (`auto` resolved) into this process's environment (and so every
    child's).  Refused once torch has loaded with other settings: they would not take effect, and
    results would be keyed under a profile they were not made in."""
    if profile not in CHOICES:
        raise UsageError(f"unknown numerics profile {profile!r}; known profiles: {', '.join(CHOICES)}")
    profile = resolve(profile)
    wanted = PROFILES[profile]
    if "torch" in sys.modules and current() != profile:
        raise UsageError(
            f"--numerics {profile} must be set before torch loads; run icl-bench in a fresh process"
        )
    os.environ.update(wanted)


def current() -> str:
    """The profile this process's environment holds: `portable` when all of its settings are in place,
    else `native`."""
    portable = PROFILES["portable"]
    return "portable" if all(os.environ.get(name) == value for name, value in portable.items()) else "native"


def state() -> dict[str, Any]:
    """What decides the rounding here: the profile, the instruction set ATen dispatches to, the
    intra-op threads, and the pinning variables that are set (for environment.json)."""
    import torch

    return {
        "profile": current(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "variables": {name: os.environ[name] for name in VARIABLES if name in os.environ},
    }


def key() -> str:
    """The store keys' part: `portable` is one value on every AVX2 machine running its threads; else the
    profile, instruction set and thread count, so results of different CPU kinds never share a key."""
    found = state()
    if found["profile"] == "portable" and (found["cpu_capability"], found["threads"]) == ("AVX2", THREADS):
        return "portable"
    return f"{found['profile']}-{found['cpu_capability'].lower()}-t{found['threads']}"
