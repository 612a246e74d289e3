"""Pages past the end, however far: an empty page, never a 500 (schemathesis found
`GET /scim/v2/Users?startIndex=6644540470343510518707492225024` overflowing the database's
integer)."""

import pytest

from tests.identity.support import LIST, Scim

FAR = [2**63, 2**64, 6644540470343510518707492225024]


@pytest.mark.parametrize("start", FAR)
async def test_a_start_index_past_any_integer_is_an_empty_page(scim: Scim, start: int):
    await scim.create_user("alice")
    await scim.create_group("Eng")
    for path in ("Users", "Groups"):
        body = await scim.listed(path, startIndex=start)
        assert body["schemas"] == [LIST]
        assert (body["totalResults"], body["itemsPerPage"]) == (1, 0), body
        assert body.get("Resources", []) == []
        r = await scim.post(f"{path}/.search", {"startIndex": start, "count": 5})
        assert r.status_code == 200, r.text
        assert (r.json()["totalResults"], r.json()["itemsPerPage"]) == (1, 0), r.text
