"""Load generation with wrk (Debian package) and bench/wrk_check.lua."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.procs import BenchError, cpu_seconds, pinned

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk_check.lua"
MARKER = "WRK_JSON "


@dataclass(frozen=True)
class Load:
    duration: float = 15.0
    warmup: float = 3.0
    connections: int = 32
    threads: int = 2
    timeout: float = 10.0
    cpus: str | None = None  # taskset's CPU list for wrk (None: unpinned)


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    non_2xx: int
    # CPU time the server (with its child processes) spent during the timed run, when known
    server_cpu_s: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return self.server_cpu_s / self.requests * 1e6

    @classmethod
    def parse(cls, stdout: str) -> WrkResult:
        for line in stdout.splitlines():
            if line.startswith(MARKER):
                data: dict[str, Any] = json.loads(line[len(MARKER) :])
                errors = data["errors"]
                return cls(
                    requests=int(data["requests"]),
                    seconds=data["duration_us"] / 1e6,
                    p50_ms=data["p50_us"] / 1000,
                    p90_ms=data["p90_us"] / 1000,
                    p99_ms=data["p99_us"] / 1000,
                    max_ms=data["max_us"] / 1000,
                    socket_errors=sum(errors[k] for k in ("connect", "read", "write", "timeout")),
                    non_2xx=int(errors["status"]),
                )
        raise BenchError(f"wrk printed no summary:\n{stdout}")


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: apt-get update && apt-get install -y wrk")
    return path


def _wrk(url: str, bodies: Path, authorization: str | None, seconds: float, load: Load) -> str:
    argv = [
        *pinned([wrk_path()], load.cpus),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={load.timeout:g}s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(bodies),
    ]
    env = {**os.environ, "BENCH_AUTHORIZATION": authorization or ""}
    try:
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish in {seconds + 60:.0f} s") from exc
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def measure(
    url: str, bodies: Path, authorization: str | None, load: Load, server_pid: int | None = None
) -> WrkResult:
    """A warm-up run (discarded), then the timed run; with `server_pid`, also the CPU time the
    server spent during the timed run."""
    if load.warmup > 0:
        _wrk(url, bodies, authorization, load.warmup, load)
    if server_pid is None:
        return WrkResult.parse(_wrk(url, bodies, authorization, load.duration, load))
    before = cpu_seconds(server_pid)
    result = WrkResult.parse(_wrk(url, bodies, authorization, load.duration, load))
    return replace(result, server_cpu_s=cpu_seconds(server_pid) - before)
