"""What every run records so that it can be reproduced: the harness's source, the libraries, the device.

Standard library only (torch is imported only to name a device), so the CLI's `--version` and
the driver's tags cost nothing at import.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.contract import Tag

DISTRIBUTION = "snn-kd-harness"
LIBRARIES = ("torch", "spikingjelly", "ray", "optuna", "mlflow")
ROOT = Path(__file__).resolve().parent.parent  # the checkout (or site-packages) holding `harness`


@dataclass(frozen=True)
class Source:
    """The harness that runs: its installed version and, in its own git checkout, the commit."""

    version: str
    commit: str | None  # the full hash; None outside a git checkout of the harness
    dirty: bool | None  # tracked files differ from `commit`

    def describe(self) -> str:
        """`0.1.0 (git 1a2b3c4, dirty)`, or `0.1.0` outside a checkout."""
        if self.commit is None:
            return self.version
        return f"{self.version} (git {self.commit[:7]}{', dirty' if self.dirty else ''})"


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True, timeout=10)
    return done.stdout.strip()


@functools.cache
def source() -> Source:
    """The harness's version, commit and dirty flag (git runs once per process)."""
    try:
        installed = version(DISTRIBUTION)
    except PackageNotFoundError:
        installed = "unknown (not installed)"
    try:
        if Path(_git("rev-parse", "--show-toplevel")).resolve() != ROOT:
            return Source(installed, None, None)  # installed into some other project's checkout
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return Source(installed, None, None)
    return Source(installed, commit, dirty)


@functools.cache
def library_versions() -> dict[str, str]:
    """The installed versions of the libraries a result depends on."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_name() -> str:
    """The processor's model name (`/proc/cpuinfo` on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: Any) -> str:
    """`NVIDIA H200` for a CUDA device, the CPU's model name for the CPU."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return cpu_name()


def environment_tags() -> dict[str, str]:
    """The tags of the harness's source and the libraries' versions (every run gets them)."""
    src = source()
    tags = {Tag.VERSION.value: src.describe()}
    if src.commit is not None:
        tags[Tag.GIT_COMMIT.value] = src.commit
        tags[Tag.GIT_DIRTY.value] = str(bool(src.dirty)).lower()
    tags |= {f"{Tag.LIBRARY}{name}": installed for name, installed in library_versions().items()}
    return tags
