"""The benchmark's bulk-written history (`bench.history_generate`) is what the change pipeline
would have written: for instants through it, `explain?at=T`, `principals/{p}/access?at=T` and
`exposure?at=T` answer what a plain `casbin.Enforcer` built from the policy as of T (replayed
from the generated changes, not from the rows) answers; and the final tables are the policy
the history ends with."""

import bisect
import random
from datetime import UTC, datetime, timedelta

from app.config import Settings
from bench import history_generate
from bench.exposure import rows
from bench.exposure_analyser import Shape
from bench.exposure_analyser import generate as generate_org
from tests.accesslog.test_verify import served
from tests.policy.test_history_matches_casbin import Example, answers, reference

SMALL = Shape(
    leaves=16,
    services=3,
    divisions=2,
    departments_per_division=2,
    orgs_per_department=2,
    teams=5,
    extra_group_links=2,
    families=2,
    tables=2,
    columns=2,
    grants=30,
    seed=3,
)


async def test_a_generated_history_answers_at_every_instant_what_casbin_answers_then(
    database_url: str, tokens
):
    org = generate_org(SMALL)
    end = datetime.now(UTC) - timedelta(minutes=1)
    start = end - timedelta(days=2)
    generated = history_generate.generate(
        org, rows(org, start), start=start, end=end, changes=200, seed=5
    )
    assert {c.kind for c in generated.changes} == {k for k, _ in history_generate.MIX}
    await history_generate.write(database_url, generated)
    ex = Example(0)
    ex.leaves = [*org.users, *org.services]
    ex.datasets = list(org.datasets)
    instants = history_generate.instants(generated, 6, random.Random(7))
    instants += [start + timedelta(microseconds=1), end + timedelta(seconds=1)]
    random.Random(8).shuffle(instants)  # each derived from the nearest kept: later or earlier
    at_of = [v["at"] for v in generated.versions]
    async with served(Settings(database_url=database_url)) as (client, _):
        for at in instants:
            version = generated.versions[bisect.bisect_right(at_of, at) - 1]["version"]
            policy = history_generate.policy_as_of(generated, version)
            assert await answers(client, tokens["admin"], ex, at) == reference(ex, policy, at), at
        now = datetime.now(UTC)
        final = history_generate.policy_as_of(generated, generated.last_version)
        assert await answers(client, tokens["admin"], ex, now) == reference(ex, final, now)
        r = await client.get("/v1/grants", params={"limit": 1000}, headers=tokens["admin"])
        assert r.status_code == 200, r.text
        assert {g["id"] for g in r.json()["items"]} == {int(rule.id) for rule in final[0]}
