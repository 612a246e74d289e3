"""A small HTTP/1.1 load generator for the abuse tests: raw asyncio streams (an HTTP client
library would cost more CPU than the server it measures), run as its own process.

    python -m tests.e2e.load PORT SECONDS < SPEC_JSON  ->  one JSON line of results

SPEC_JSON: {"checks": {"connections": n, "request": "<raw HTTP>"},
            "abuse": {"connections": n, "request": "<raw HTTP>", "partial": bool,
                      "timeout": seconds} | null}
A partial abuse request is sent without the rest of its body, on a fresh connection each time.
"""

import asyncio
import json
import sys
import time
from typing import Any

TIMEOUT = 10.0


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) of one response, its body read."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, not close


async def _loop(
    port: int,
    request: bytes,
    until: float,
    partial: bool,
    out: dict[str, Any],
    answer_within: float = TIMEOUT,
):
    reader = writer = None
    while time.monotonic() < until:
        try:
            if writer is None or partial:
                if writer is not None:
                    writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            started = time.perf_counter()
            writer.write(request)
            status, keep = await asyncio.wait_for(_response(reader), answer_within)
            out["latencies"].append(time.perf_counter() - started)
            out["statuses"][status] = out["statuses"].get(status, 0) + 1
            if not keep:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            out["errors"] += 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


def _summary(out: dict[str, Any], seconds: float) -> dict[str, Any]:
    latencies = sorted(out["latencies"])
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else None
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / seconds, 1),
        "p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "statuses": {str(k): v for k, v in out["statuses"].items()},
        "errors": out["errors"],
    }


async def run(port: int, seconds: float, spec: dict[str, Any]) -> dict[str, Any]:
    tasks = []
    results: dict[str, Any] = {}
    abuse = spec.get("abuse")
    if abuse:  # started first, so it is under way when the checks are timed
        results["abuse"] = {"latencies": [], "statuses": {}, "errors": 0}
        for _ in range(abuse["connections"]):
            tasks.append(
                asyncio.create_task(
                    _loop(
                        port,
                        abuse["request"].encode("latin-1"),
                        time.monotonic() + seconds + 0.5,
                        abuse.get("partial", False),
                        results["abuse"],
                        abuse.get("timeout", TIMEOUT),
                    )
                )
            )
        await asyncio.sleep(0.5)
    results["checks"] = {"latencies": [], "statuses": {}, "errors": 0}
    until = time.monotonic() + seconds
    checks = spec["checks"]
    for _ in range(checks["connections"]):
        tasks.append(
            asyncio.create_task(
                _loop(port, checks["request"].encode("latin-1"), until, False, results["checks"])
            )
        )
    await asyncio.gather(*tasks)
    return {name: _summary(out, seconds) for name, out in results.items()}


def http_request(
    method: str, path: str, headers: dict[str, str], body: bytes = b"", length: int | None = None
) -> str:
    """A raw request; `length` overrides Content-Length (a body that is never all sent)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or length is not None:
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    return "\r\n".join(lines) + "\r\n\r\n" + body.decode("latin-1")


if __name__ == "__main__":
    port, seconds, spec = int(sys.argv[1]), float(sys.argv[2]), json.load(sys.stdin)
    print(json.dumps(asyncio.run(run(port, seconds, spec))))
