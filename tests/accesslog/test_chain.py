"""The hash chain alone: any edit, deletion, reordering or truncation is caught at its id."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app import chain

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def make_log(n: int) -> list[dict]:
    entries, prev = [], chain.GENESIS
    for i in range(1, n + 1):
        entry = {
            "id": i,
            "decision_id": f"d-{i}",
            "at": T0 + timedelta(seconds=i),
            "principal": f"user:u{i % 3}",
            "dataset": "employee_activity.keystrokes",
            "action": "read",
            "purpose": None,
            "decision": "allow" if i % 2 else "deny",
            "reason": {"code": "granted", "grant_id": 1, "via": ["user:u", "group:g"]},
            "out_of_audience": bool(i % 2),
            "data_subjects": [f"user:s{i}"],
            "request_id": None,
            "caller": "svc",
            "policy_version": 1,
            "prev_hash": prev,
        }
        entry["hash"] = prev = chain.entry_hash(prev, entry)
        entries.append(entry)
    return entries


def run(entries: list[dict], head_id: int, head_hash: str, marks=None) -> chain.ChainVerifier:
    verifier = chain.ChainVerifier(marks)
    for e in entries:
        if not verifier.feed(e):
            break
    verifier.finish(head_id, head_hash)
    return verifier


def test_the_canonical_form_and_hash_stay_what_existing_logs_were_chained_with():
    """Logs already written must keep verifying: the bytes hashed may never change."""
    entry = make_log(2)[1]
    assert chain.canonical(entry) == (
        b'{"action":"read","at":"2026-11-01T00:00:02.000000Z","caller":"svc",'
        b'"data_subjects":["user:s2"],"dataset":"employee_activity.keystrokes",'
        b'"decision":"deny","decision_id":"d-2","id":2,"out_of_audience":false,'
        b'"policy_version":1,"principal":"user:u2","purpose":null,"reason":{"code":"granted",'
        b'"grant_id":1,"via":["user:u","group:g"]},"request_id":null}'
    )
    assert entry["hash"] == "62814d7f2eebbc30c4c870ec9bdca9c2ae354ef161107b446ba4caa5a7316686"
    # A batch hashes with its instant's text worked out once; the same bytes.
    at_text = chain.utc_text(entry["at"])
    assert chain.entry_hash(entry["prev_hash"], entry, at_text) == entry["hash"]
    later = chain.utc_text(entry["at"] + timedelta(microseconds=1))
    assert chain.entry_hash(entry["prev_hash"], entry, later) != entry["hash"]


def test_untouched_log_verifies():
    log = make_log(10)
    v = run(log, 10, log[-1]["hash"])
    assert v.first_bad_id is None and v.checked == 10 and v.head == log[-1]["hash"]


def test_empty_log_verifies_against_genesis():
    assert run([], 0, chain.GENESIS).first_bad_id is None


FIELDS = ["principal", "dataset", "decision", "out_of_audience", "data_subjects", "at", "reason"]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_edited_entry_is_the_first_bad_id(n, data):
    log = make_log(n)
    victim = data.draw(st.integers(0, n - 1))
    field = data.draw(st.sampled_from(FIELDS))
    tampered = dict(log[victim])
    tampered[field] = {
        "principal": "user:mallory",
        "dataset": "other.dataset",
        "decision": "deny" if tampered["decision"] == "allow" else "allow",
        "out_of_audience": not tampered["out_of_audience"],
        "data_subjects": [],
        "at": tampered["at"] + timedelta(microseconds=1),
        "reason": {"code": "no_grant", "grant_id": None, "via": []},
    }[field]
    log[victim] = tampered
    assert run(log, n, log[-1]["hash"]).first_bad_id == victim + 1


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_deleted_entry_is_the_first_bad_id(n, data):
    log = make_log(n)
    victim = data.draw(st.integers(0, n - 2))
    del log[victim]
    assert run(log, n, make_log(n)[-1]["hash"]).first_bad_id == victim + 1


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_swapped_entries_are_caught_at_the_first(n, data):
    log = make_log(n)
    a = data.draw(st.integers(0, n - 2))
    b = data.draw(st.integers(a + 1, n - 1))
    # swap contents but keep ids in order, as an attacker rewriting rows would
    log[a], log[b] = {**log[b], "id": a + 1}, {**log[a], "id": b + 1}
    assert run(log, n, make_log(n)[-1]["hash"]).first_bad_id == a + 1


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_truncated_tail_is_caught_by_the_head(n, data):
    log = make_log(n)
    keep = data.draw(st.integers(0, n - 1))
    assert run(log[:keep], n, log[-1]["hash"]).first_bad_id == keep + 1


def test_truncation_with_a_rewritten_head_is_caught_by_a_checkpoint():
    log = make_log(20)
    marks = {15: log[14]["hash"]}
    truncated = log[:12]
    # the attacker also rewrote the head to the new last entry
    v = run(truncated, 12, truncated[-1]["hash"], marks)
    assert v.first_bad_id == 13 and "removed" in (v.problem or "")


def test_checkpoint_signatures_need_the_key():
    sig = chain.sign_checkpoint(b"k1", 1000, "a" * 64)
    assert chain.checkpoint_signature_ok(b"k1", 1000, "a" * 64, sig)
    assert not chain.checkpoint_signature_ok(b"k2", 1000, "a" * 64, sig)
    assert not chain.checkpoint_signature_ok(b"k1", 999, "a" * 64, sig)
