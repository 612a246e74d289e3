"""The app served on a thread of its own for the policy's hypothesis tests, and an admin
token for it."""

from collections.abc import Iterator

import pytest

from app.auth import service as auth_service
from app.config import Settings
from tests.me.test_me import Served


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    server = Served(settings)
    yield server
    server.close()


@pytest.fixture
def admin_headers(served: Served) -> dict[str, str]:
    async def create() -> str:
        async with served.app.state.sessionmaker() as session, session.begin():
            return await auth_service.create_token(session, name="hist-admin", scopes=["admin"])

    return {"Authorization": f"Bearer {served.run(create())}"}
