"""The pure part of the policy history: what a change opens and closes, and the policy of a
version rebuilt from rows."""

from datetime import UTC, datetime, timedelta

from app.policy.casbin_model import Rule
from app.policy.history.timeline import (
    History,
    Span,
    diff,
    rows_as_of,
    state_as_of,
    state_from,
)
from app.policy.holds import hold_rules
from app.policy.state import DatasetFacts, PolicyChange, PolicyRows, PolicyState

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)
FACTS = DatasetFacts("a.b", "internal", ("group:eng",), "alert")


def allow(rule_id: int, sub: str = "group:eng") -> Rule:
    return Rule(sub, "a.*", "read", "allow", "", str(rule_id))


def test_a_change_opens_and_closes_only_its_net_difference():
    hold = hold_rules(7, "user:amy", "a.b")  # one rule per reading action, one hold
    change = PolicyChange(
        added=(allow(1), allow(2), *hold),
        removed=(allow(2), allow(3)),
        links_added=(("user:amy", "group:eng"),),
        links_removed=(("user:bob", "group:eng"),),
        datasets=(FACTS, DatasetFacts("c", "public", (), "alert")),
    )
    found = diff({"a.b": FACTS}, change)  # a.b's facts did not change; c is new
    assert found.grants_opened == (allow(1),)
    assert found.grants_closed == (3,)
    assert found.holds_opened == ((7, "user:amy", "a.b"),)
    assert (found.links_opened, found.links_closed) == (
        (("user:amy", "group:eng"),),
        (("user:bob", "group:eng"),),
    )
    assert [f.id for f in found.datasets_opened] == ["c"] and found.datasets_closed == ()
    rescoped = DatasetFacts("a.b", "internal", ("group:all",), "alert")
    moved = diff({"a.b": FACTS}, PolicyChange(datasets=(rescoped,)))
    assert (moved.datasets_closed, moved.datasets_opened) == (("a.b",), (rescoped,))
    assert diff({}, PolicyChange()).is_empty


def test_rows_hold_from_their_opening_until_their_closing_version():
    history = History(
        grants=[(Span(3, T0, 5, T0 + 2 * DAY), allow(1)), (Span(5, T0 + 2 * DAY), allow(2))],
        links=[(Span(2, T0 - DAY), ("user:amy", "group:eng"))],
        datasets=[(Span(1, T0 - 2 * DAY), FACTS)],
        holds=[(Span(4, T0 + DAY, 6, T0 + 3 * DAY), (7, "user:amy", "a.b"))],
    )
    assert rows_as_of(history, 2).rules == []
    assert rows_as_of(history, 4).rules == [allow(1), *hold_rules(7, "user:amy", "a.b")]
    assert rows_as_of(history, 6).rules == [allow(2)]
    state, rows = state_as_of(history, 4)
    assert state.version == 4 and rows.rules[0] == allow(1)
    assert rows.links == [("user:amy", "group:eng")] and state.datasets == {"a.b": FACTS}
    state, rows = state_as_of(history, 5)
    assert allow(2) in rows.rules and allow(1) not in rows.rules
    state, rows = state_as_of(history, 0)  # before any row: empty
    assert (state.version, rows.rules, rows.links, rows.datasets) == (0, [], [], {})


class RowsKind:
    """A view kind whose view is the rows themselves: carried over a change as a view is."""

    async def build(self, rows: PolicyRows, state: PolicyState) -> tuple[frozenset, frozenset]:
        return frozenset(rows.rules), frozenset(rows.links)

    def carry(self, view, change: PolicyChange, state: PolicyState):
        rules, links = view
        rules = (rules - set(change.removed)) | set(change.added)
        links = (links - set(change.links_removed)) | set(change.links_added)
        return rules, links


def _between(span: Span, low: int, high: int) -> bool:
    """Opened or closed by a version after `low` up to `high` (`load_between`'s rows)."""
    until = span.until_version
    return low < span.from_version <= high or (until is not None and low < until <= high)


async def test_a_state_derived_from_an_earlier_or_later_one_is_the_rebuilt_one():
    """Versions 1-8: grants, a hold, a link left and joined again, a dataset re-scoped and
    unregistered. From every version's state, every other version's, derived over the rows
    opened or closed between them, has the rebuilt one's rules, links and datasets."""
    rescoped = DatasetFacts("a.b", "internal", ("group:all",), "alert")
    other = DatasetFacts("c", "public", (), "alert")
    link = ("user:amy", "group:eng")
    history = History(
        grants=[(Span(2, T0, 5, T0), allow(1)), (Span(3, T0), allow(2, "user:bob"))],
        links=[(Span(1, T0, 4, T0), link), (Span(6, T0), link), (Span(2, T0), ("g", "h"))],
        datasets=[
            (Span(1, T0, 7, T0), FACTS),
            (Span(7, T0), rescoped),
            (Span(3, T0, 8, T0), other),
        ],
        holds=[(Span(4, T0, 6, T0), (7, "user:amy", "a.b"))],
    )
    kind = RowsKind()
    for base_version in range(1, 9):
        base, rows = state_as_of(history, base_version)
        await base.build(kind, rows)
        for version in range(1, 9):
            low, high = sorted((base_version, version))

            changed = History(
                [(s, r) for s, r in history.grants if _between(s, low, high)],
                [(s, m) for s, m in history.links if _between(s, low, high)],
                [(s, f) for s, f in history.datasets if _between(s, low, high)],
                [(s, h) for s, h in history.holds if _between(s, low, high)],
            )
            derived = state_from(base, changed, version)
            expected = rows_as_of(history, version)
            assert derived.version == version
            assert dict(derived.datasets) == expected.datasets, (base_version, version)
            assert derived.view(kind) == (frozenset(expected.rules), frozenset(expected.links))


async def test_a_derived_state_can_give_only_the_views_its_base_had():
    """`_nearest` (app.policy.history.service) picks a base by `can_view(kind)`: a base with
    another view only (the newest state with just its check index) would leave the derived
    state without the analyser, to be rebuilt from every row held then (seconds at scale)."""
    history = History(grants=[(Span(1, T0), allow(1)), (Span(2, T0), allow(2, "user:bob"))])
    held, other = RowsKind(), RowsKind()
    base, rows = state_as_of(history, 1)
    await base.build(held, rows)
    derived = state_from(base, History(grants=history.grants[1:]), 2)
    assert base.can_view(held) and not base.can_view(other)
    assert derived.can_view(held) and not derived.can_view(other)
    assert derived.view(other) is None
    assert derived.view(held) == (frozenset(rows_as_of(history, 2).rules), frozenset())
