import httpx
import pytest

from tests.conftest import Tokens
from tests.identity.support import Scim


@pytest.fixture
def scim(client: httpx.AsyncClient, tokens: Tokens) -> Scim:
    return Scim(client, tokens["scim"])
