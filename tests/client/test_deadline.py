"""A check has one overall deadline: a server that answers slowly, byte by byte, gets a deny in
time, not an allow a minute later (real sockets: httpx's timeouts are per read)."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.client import AclauditClient, AsyncAclauditClient, Retries, TimeoutException
from tests.client.conftest import ALLOW

CHECK: dict[str, Any] = {"principal": "service:trainer", "dataset": "employee_activity.keystrokes"}
DEADLINE = 0.6
BODY = json.dumps(ALLOW).encode()
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
    len(BODY)
)


class TrickleServer:
    """A loopback HTTP/1.1 server that answers a valid allow, ``chunk`` bytes every ``gap``
    seconds; ``trickle_head`` trickles the status line and headers too."""

    def __init__(self, *, trickle_head: bool, gap: float = 0.3, chunk: int = 1) -> None:
        self.trickle_head, self.gap, self.chunk = trickle_head, gap, chunk
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request (small: headers and a JSON body in one segment)
            if not self.trickle_head:
                conn.sendall(HEAD)
            rest = (HEAD if self.trickle_head else b"") + BODY
            for i in range(0, len(rest), self.chunk):
                if self.stopped.wait(self.gap):
                    return
                try:
                    conn.sendall(rest[i : i + self.chunk])
                except OSError:
                    return  # the client gave up and closed

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.listener.close()


@pytest.fixture(params=[False, True], ids=["trickled-body", "trickled-head"])
def server(request: pytest.FixtureRequest) -> Iterator[TrickleServer]:
    s = TrickleServer(trickle_head=request.param)
    yield s
    s.stop()


def sync_check(url: str, **kwargs: Any) -> Any:
    with AclauditClient(url, token="t0ken", **kwargs) as client:
        return client.check(**CHECK)


async def async_check(url: str, **kwargs: Any) -> Any:
    async with AsyncAclauditClient(url, token="t0ken", **kwargs) as client:
        return await client.check(**CHECK)


def assert_denied_in_time(result: Any, started: float) -> None:
    elapsed = time.monotonic() - started
    assert result.decision == "deny" and result.allowed is False
    assert result.reason.code == "unavailable" and not result.recorded
    assert isinstance(result.error, TimeoutException)
    assert "deadline" in str(result.error)
    assert DEADLINE <= elapsed < DEADLINE + 0.5, elapsed


def test_trickled_allow_is_a_deny_at_the_deadline_sync(server: TrickleServer) -> None:
    started = time.monotonic()
    assert_denied_in_time(sync_check(server.url, deadline=DEADLINE), started)


async def test_trickled_allow_is_a_deny_at_the_deadline_async(server: TrickleServer) -> None:
    started = time.monotonic()
    assert_denied_in_time(await async_check(server.url, deadline=DEADLINE), started)


def test_trickled_allow_is_a_deny_at_the_deadline_with_a_custom_transport(
    server: TrickleServer,
) -> None:
    started = time.monotonic()
    result = sync_check(server.url, deadline=DEADLINE, transport=httpx.HTTPTransport(retries=1))
    assert_denied_in_time(result, started)


def test_trickled_allow_through_a_proxy_is_a_deny_at_the_deadline(
    server: TrickleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy httpx takes from the environment is bound by the deadline too."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    started = time.monotonic()
    assert_denied_in_time(sync_check("http://aclaudit.test", deadline=DEADLINE), started)


def test_body_is_read_against_the_deadline_with_any_transport() -> None:
    """A transport the client cannot bind still has its answer read against the deadline."""

    class Wrapped(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return self.inner.handle_request(request)

    s = TrickleServer(trickle_head=False, gap=0.1, chunk=4)
    try:
        started = time.monotonic()
        result = sync_check(s.url, deadline=DEADLINE, transport=Wrapped())
        assert result.allowed is False and isinstance(result.error, TimeoutException)
        assert time.monotonic() - started < DEADLINE + 0.5
    finally:
        s.stop()


@pytest.fixture
def slow_server() -> Iterator[TrickleServer]:
    s = TrickleServer(trickle_head=False, gap=0.01, chunk=32)
    yield s
    s.stop()


def test_slow_but_complete_answer_within_the_deadline_is_an_allow_sync(
    slow_server: TrickleServer,
) -> None:
    result = sync_check(slow_server.url, deadline=5.0)
    assert result.allowed and result.access_log_id == ALLOW["access_log_id"]


async def test_slow_but_complete_answer_within_the_deadline_is_an_allow_async(
    slow_server: TrickleServer,
) -> None:
    result = await async_check(slow_server.url, deadline=5.0)
    assert result.allowed and result.access_log_id == ALLOW["access_log_id"]


@pytest.mark.parametrize("deadline", [0, -1.0, float("nan"), float("inf")])
def test_deadline_must_be_a_positive_finite_number(deadline: float) -> None:
    with pytest.raises(ValueError, match="deadline"):
        AclauditClient("http://aclaudit.test", token="t", deadline=deadline)
    with pytest.raises(ValueError, match="deadline"):
        AsyncAclauditClient("http://aclaudit.test", token="t", deadline=deadline)


def test_refused_connection_retries_stop_at_the_deadline() -> None:
    """Retries with backoff never outlast the deadline."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens: every connect is refused
    started = time.monotonic()
    result = sync_check(
        f"http://127.0.0.1:{port}",
        deadline=0.3,
        retries=Retries(attempts=100, backoff=0.2, max_backoff=0.2),
    )
    assert result.allowed is False and result.reason.code == "unavailable"
    assert time.monotonic() - started < 0.6


def test_trickled_staff_read_raises_timeout_at_the_deadline_sync(server: TrickleServer) -> None:
    started = time.monotonic()
    with (
        AclauditClient(server.url, token="t0ken", deadline=DEADLINE) as client,
        pytest.raises(TimeoutException, match="deadline"),
    ):
        client.verify_access_log()
    assert time.monotonic() - started < DEADLINE + 0.5


async def test_trickled_staff_read_raises_timeout_at_the_deadline_async(
    server: TrickleServer,
) -> None:
    started = time.monotonic()
    async with AsyncAclauditClient(server.url, token="t0ken", deadline=DEADLINE) as client:
        with pytest.raises(TimeoutException, match="deadline"):
            await client.verify_access_log()
    assert time.monotonic() - started < DEADLINE + 0.5
