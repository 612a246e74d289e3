"""Real ``aclaudit serve`` processes for multi-worker and crash tests."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ACLAUDIT = str(Path(sys.executable).with_name("aclaudit"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """`command` run on those CPUs only (taskset), or as it is without taskset."""
    taskset = shutil.which("taskset")
    return [taskset, "-c", cpus, *command] if cpus and taskset else command


class Server:
    def __init__(
        self,
        database_url: str,
        workers: int = 1,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        cpus: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.env = env or {}
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.cpus = cpus  # taskset's CPU list, where taskset is available

    def start(self, timeout: float = 30.0) -> "Server":
        env = {**os.environ, "ACLAUDIT_DATABASE_URL": self.database_url, **self.env}
        if self.log and "PROMETHEUS_MULTIPROC_DIR" not in self.env:
            # beside the log, so a server killed with -9 leaves nothing behind in /tmp
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.log.parent / f"metrics-{self.port}")
        command = [ACLAUDIT, "serve", "--port", str(self.port), "--workers", str(self.workers)]
        command = pinned(command, self.cpus)
        if self.log:
            with open(self.log, "ab") as out:
                self.process = subprocess.Popen(
                    command, env=env, stdout=out, stderr=out, start_new_session=True
                )
        else:
            # its own process group, so kill -9 reaches every worker
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"aclaudit serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("aclaudit serve did not become ready")

    def kill9(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM to every process (graceful); SIGKILL after 20 s. The exit code, if it ran."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            return None
