"""One overall deadline per call, across retries, the request and the whole answer.

httpx's timeouts bound each socket operation, so a server (or proxy) that trickles a byte every
few hundred milliseconds never trips them. The clients therefore:

- give each request phase ``min(its timeout, time left)``;
- read the answer in chunks, checking the deadline (and a size cap) between them;
- (sync, over httpx's ``HTTPTransport``: the default, a custom one, the environment's proxies)
  cap every socket read, write and connect at the time left, through a wrapped httpcore network
  backend, so a trickled status line and headers stop on time too;
- (async) run the whole call under ``asyncio.timeout``.
"""

from __future__ import annotations

import math
import ssl
import time
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import httpcore
import httpx

from app.client._exceptions import ProtocolError, TimeoutException

# The deadline (time.monotonic()) of the sync call running in this thread, read by the socket
# wrapper below; None outside a call.
_ACTIVE: ContextVar[float | None] = ContextVar("aclaudit_client_deadline", default=None)
# A check's answer is a few hundred bytes, a batch's or a page's well under a megabyte.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


def validate(deadline: float) -> float:
    if not (isinstance(deadline, int | float) and math.isfinite(deadline) and deadline > 0):
        raise ValueError(f"deadline is a positive number of seconds, not {deadline!r}")
    return float(deadline)


@dataclass(frozen=True, slots=True)
class Deadline:
    seconds: float
    at: float

    @classmethod
    def start(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def exceeded(self) -> TimeoutException:
        return TimeoutException(f"the call's deadline of {self.seconds:g} s passed")

    def check(self) -> float:
        """The seconds left; raises ``TimeoutException`` if none are."""
        left = self.remaining()
        if left <= 0:
            raise self.exceeded()
        return left

    def cap(self, timeout: httpx.Timeout) -> httpx.Timeout:
        """``timeout`` with no phase longer than the time left."""
        left = self.check()

        def capped(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(
            connect=capped(timeout.connect),
            read=capped(timeout.read),
            write=capped(timeout.write),
            pool=capped(timeout.pool),
        )


def _count(deadline: Deadline, response: httpx.Response, chunk: bytes, size: int) -> int:
    """The answer's size so far; raises once past the deadline or the size cap."""
    deadline.check()
    size += len(chunk)
    if size > MAX_ANSWER_BYTES:
        raise ProtocolError(
            f"{response.request.url.path}: answer larger than {MAX_ANSWER_BYTES} bytes"
        )
    return size


def read(response: httpx.Response, deadline: Deadline) -> bytes:
    """The (decoded) body of a streamed answer, read whole within ``deadline``."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size = _count(deadline, response, chunk, size)
        chunks.append(chunk)
    return b"".join(chunks)


async def aread(response: httpx.Response, deadline: Deadline) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size = _count(deadline, response, chunk, size)
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def active(deadline: Deadline) -> Iterator[None]:
    """Within: the sync socket wrapper caps every operation at ``deadline``."""
    token = _ACTIVE.set(deadline.at)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _cap(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    at = _ACTIVE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the call's deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(
            ssl_context, server_hostname, _cap(timeout, httpcore.ConnectTimeout)
        )
        return _Stream(tls)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _cap(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _Stream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(
            path, _cap(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _Stream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bound(client: httpx.Client) -> None:
    """Cap the socket operations of ``client``'s httpx transports (its own, a custom
    ``HTTPTransport``, the proxies from the environment) at the running call's deadline.
    Other transports are left as they are: their answers are still read against the deadline."""
    for transport in [client._transport, *client._mounts.values()]:
        if not isinstance(transport, httpx.HTTPTransport):
            continue
        pool = transport._pool
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, _Backend):
            pool._network_backend = _Backend(backend)
