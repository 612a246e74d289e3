"""Identifier types shared by every domain: principals, datasets, resource patterns, actions.

Each is an ``Annotated[str, ...]`` that lower-cases and validates its input, so a bad value
becomes a 422 naming the field wherever it appears (body, path or query).
"""

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

PRINCIPAL_KINDS = ("user", "service", "group")
_ID = r"[a-z0-9][a-z0-9._@+-]{0,127}"
_SEGMENT = r"[a-z0-9_][a-z0-9_-]{0,63}"
# ``\Z``, not ``$``: ``$`` also matches before a trailing newline, which would let
# "user:alice\n" through as a principal distinct from "user:alice".
PRINCIPAL_RE = re.compile(rf"^(user|service|group):{_ID}\Z")
LEAF_RE = re.compile(rf"^(user|service):{_ID}\Z")
GROUP_NAME_RE = re.compile(rf"^{_ID}\Z")
DATASET_RE = re.compile(rf"^{_SEGMENT}(\.{_SEGMENT})*\Z")
MAX_DATASET_LENGTH = 512
PURPOSE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
ANY_PURPOSE = "*"


class Action(StrEnum):
    read = "read"
    write = "write"
    export = "export"


class Effect(StrEnum):
    allow = "allow"
    deny = "deny"


def lower_ascii(value: object) -> object:
    # ASCII only: Unicode case mapping would turn e.g. the Kelvin sign into "k", accepting a
    # non-ASCII spelling as a different, valid principal.
    return value.lower() if isinstance(value, str) and value.isascii() else value


def _principal(value: str) -> str:
    if not PRINCIPAL_RE.match(value):
        raise ValueError(
            "must be user:<id>, service:<id> or group:<id>, "
            "where <id> matches [a-z0-9][a-z0-9._@+-]{0,127}"
        )
    return value


def _leaf(value: str) -> str:
    if not LEAF_RE.match(value):
        raise ValueError("must be user:<id> or service:<id>")
    return value


def _group_name(value: str) -> str:
    if not GROUP_NAME_RE.match(value):
        raise ValueError("must be a bare group id matching [a-z0-9][a-z0-9._@+-]{0,127}")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800": no database can store it
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def is_dataset_id(value: str) -> bool:
    return len(value) <= MAX_DATASET_LENGTH and bool(DATASET_RE.match(value))


def _dataset(value: str) -> str:
    if not is_dataset_id(value):
        raise ValueError(
            "must be dot-separated segments matching [a-z0-9_][a-z0-9_-]{0,63}, "
            "e.g. employee_activity.keystrokes"
        )
    return value


def _resource(value: str) -> str:
    if value == "*":
        return value
    base = value[:-2] if value.endswith(".*") else value
    if not is_dataset_id(base):
        raise ValueError("must be a dataset id, a prefix pattern ending in .* or *")
    return value


def _purpose(value: str) -> str:
    if value != ANY_PURPOSE and not PURPOSE_RE.match(value):
        raise ValueError('must match [a-z0-9][a-z0-9._-]{0,63}, or be "*" (any purpose)')
    return value


def pattern_covers(resource: str, dataset: str) -> bool:
    """Whether a grant's resource covers a dataset id (mirrors Casbin's keyMatch on valid ids)."""
    if resource == "*":
        return True
    if resource.endswith(".*"):
        return dataset.startswith(resource[:-1])
    return resource == dataset


PrincipalId = Annotated[
    str, BeforeValidator(lower_ascii), Field(examples=["user:alice"]), AfterValidator(_principal)
]
LeafPrincipalId = Annotated[
    str, BeforeValidator(lower_ascii), Field(examples=["service:trainer"]), AfterValidator(_leaf)
]
GroupName = Annotated[
    str, BeforeValidator(lower_ascii), Field(examples=["mci-research"]), AfterValidator(_group_name)
]
DatasetId = Annotated[
    str, Field(examples=["employee_activity.keystrokes"]), AfterValidator(_dataset)
]
ResourcePattern = Annotated[str, Field(examples=["employee_activity.*"]), AfterValidator(_resource)]
# A grant's purpose: what the data may be read for (`model-training`), or "*" for any.
PurposeId = Annotated[str, Field(examples=["model-training"]), AfterValidator(_purpose)]
# Free text (descriptions, justifications): anything but NUL, which PostgreSQL text refuses.
FreeText = Annotated[str, AfterValidator(_no_nul)]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is past year 9999 in UTC
        raise ValueError("is out of range once converted to UTC") from None


# The start of an RFC 3339 date-time. Without this check pydantic also reads a bare number
# as a Unix time (seconds or milliseconds, by size): ?since=2020 would mean 1970-01-01T00:33:40Z.
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _timestamp(value: object) -> object:
    if isinstance(value, datetime) or (isinstance(value, str) and _TIMESTAMP_RE.match(value)):
        return value
    raise ValueError("must be an RFC 3339 timestamp with a timezone, e.g. 2026-11-27T18:00:00Z")


# An instant with its timezone, normalised to UTC (and refused if that leaves the datetime range).
UTCInstant = Annotated[AwareDatetime, BeforeValidator(_timestamp), AfterValidator(_to_utc)]
