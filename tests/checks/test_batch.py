"""Decision ids: RFC 9562 version-7 UUIDs, unique, in time order across milliseconds."""

import uuid

from app.checks.batch import decision_ids


def test_decision_ids_are_unique_version_7_uuids_in_time_order():
    first = decision_ids(500, 1_800_000_000.000)
    later = decision_ids(500, 1_800_000_000.002)
    for text in first + later:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert len(set(first + later)) == 1000
    assert max(first) < min(later)  # the millisecond prefix orders them
    assert uuid.UUID(first[0]).int >> 80 == 1_800_000_000_000
