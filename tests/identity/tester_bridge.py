"""scim2-tester in-process: its checks need a synchronous client, the app runs on the test's
event loop. The checks run in a worker thread whose transport hands each request to the loop
(httpx2's ASGI transport) and waits for the answer."""

import asyncio
from typing import Any

import httpx2
from fastapi import FastAPI


class LoopTransport(httpx2.BaseTransport):
    def __init__(self, app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = httpx2.ASGITransport(app=app)
        self.loop = loop

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        async def call() -> tuple[int, Any, bytes]:
            request.stream = httpx2.ByteStream(request.read())
            response = await self.inner.handle_async_request(request)
            body = await response.aread()
            return response.status_code, response.headers, body

        status, headers, body = asyncio.run_coroutine_threadsafe(call(), self.loop).result(60)
        return httpx2.Response(status, headers=headers, content=body, request=request)


def sync_client(app: FastAPI, loop: asyncio.AbstractEventLoop, token: str) -> httpx2.Client:
    return httpx2.Client(
        transport=LoopTransport(app, loop),
        base_url="http://aclaudit.test/scim/v2",
        headers={"Authorization": f"Bearer {token}"},
    )
