"""Child processes for the benchmark: free ports, start in their own group, wait until ready,
and always stop them (the whole process group) on the way out."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

LOOPBACK = "127.0.0.1"


class BenchError(RuntimeError):
    """A failure that ends the run with a clear message (no traceback)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` and every process descended from it, so far
    (Linux, from /proc; threads are included in their process's figures)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total = {pid}, 0.0
    for _ in range(8):  # a few levels of descendants (uvicorn, npm wrappers)
        tree |= {child for child, (parent, _cpu) in stats.items() if parent in tree}
    for member in tree:
        total += stats.get(member, (0, 0.0))[1]
    return total


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """`argv` run on those CPUs only (taskset's list, e.g. "0"), or as it is when `cpus` is None.
    Raises BenchError when pinning is asked for and taskset is missing."""
    if cpus is None:
        return list(argv)
    taskset = shutil.which("taskset")
    if taskset is None:
        raise BenchError("taskset is not installed (util-linux); pass --no-pin to run unpinned")
    return [taskset, "-c", cpus, *argv]


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group (the server and anything it forked), then SIGKILL."""
        pgid = self.process.pid  # started with start_new_session: it leads its own group
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.process.poll() is None:  # pragma: no cover - SIGKILL failed
            self.process.wait(5.0)


def _wait_ready(server: Server, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not server.alive():
                raise BenchError(
                    f"{server.name} exited with code {server.process.returncode} while starting; "
                    f"log {server.log_path}:\n{server.log_tail()}"
                )
            try:
                response = client.get(server.base_url + path)
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = type(exc).__name__
            time.sleep(0.1)
    raise BenchError(
        f"{server.name} was not ready at {server.base_url}{path} after {timeout:.0f} s "
        f"({last_error}); log {server.log_path}:\n{server.log_tail()}"
    )


@contextmanager
def running(
    name: str,
    argv: Sequence[str],
    *,
    base_url: str,
    ready_path: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_timeout: float = 60.0,
    cpus: str | None = None,
) -> Iterator[Server]:
    """Start `argv` in a new session (on `cpus` only, when given), wait until GET `ready_path`
    answers 200, stop it at exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            pinned(argv, cpus),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, process, log_path, base_url)
    try:
        _wait_ready(server, ready_path, ready_timeout)
        yield server
    finally:
        server.stop()


def run_bench(run: Callable[[], dict[str, Any]], json_path: Path | None) -> int:
    """A benchmark's main: SIGTERM unwinds through the finally blocks that stop the servers; a
    `BenchError` ends the run with its message (exit 1); the figures go to `json_path` too."""

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        report = run()
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nfigures written to {json_path}")
    return 0
