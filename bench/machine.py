"""The machine and software a benchmark run measured on."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import grpc

from cli.processes import ROOT


def _output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def _cpus() -> tuple[str, int]:
    """The CPU model and the number of logical CPUs, from /proc/cpuinfo."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    count = sum(line.startswith("processor") for line in lines)
    return (models[0] if models else "unknown"), count


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def describe() -> dict[str, str]:
    model, count = _cpus()
    redis = _output(["redis-server", "--version"]).split()
    commit = _output(["git", "rev-parse", "--short=12", "HEAD"])
    if _output(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += " (with uncommitted changes)"
    return {
        "CPU": model,
        "CPUs": str(count),
        "RAM": f"{_ram_gib():.1f} GiB",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "grpcio": grpc.__version__,
        "redis-server": next((w[2:] for w in redis if w.startswith("v=")), "unknown"),
        "h2load": _output(["h2load", "--version"]),
        "git commit": commit,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
