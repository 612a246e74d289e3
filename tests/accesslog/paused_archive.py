"""Test-only: run `aclaudit` with a pause at one named step of `aclaudit log archive`, so the
crash tests can kill -9 it exactly there. The service has no such hook: this script wraps the
archive's own functions in its process before handing over to the command line.

    python tests/accesslog/paused_archive.py STEP log archive --before ... --to ...

At STEP the process says ``paused at STEP`` on stderr and sleeps (the first time it gets
there). "dropped" pauses inside the drop transaction, after the entries are deleted and
before the commit: only a killed test process ever holds that transaction open.
"""

import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from app import cli
from app.accesslog import archiver, repository, segments

STEPS = ("segment-written", "segment-sealed", "manifest-sealed", "verified", "dropped", "committed")
PAUSE_AT = ""  # set by `main`


def pause(step: str) -> None:
    sys.stderr.write(f"\npaused at {step}\n")
    sys.stderr.flush()
    time.sleep(3600)


def after(function: Callable[..., Any], step: Callable[[Any], str | None]) -> Callable[..., Any]:
    """`function`, pausing after it returns when `step(result)` names the step to pause at."""

    @wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        if step(result) == PAUSE_AT:
            pause(PAUSE_AT)
        return result

    return wrapped


def after_async(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    @wraps(function)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = await function(*args, **kwargs)
        if name == PAUSE_AT:
            pause(PAUSE_AT)
        return result

    return wrapped


def sealed(path: Path) -> str:
    return "segment-sealed" if path.name.endswith(segments.SEGMENT_SUFFIX) else "manifest-sealed"


def main() -> None:
    global PAUSE_AT
    PAUSE_AT = sys.argv.pop(1)
    assert PAUSE_AT in STEPS, PAUSE_AT
    segments.write_segment = after(segments.write_segment, lambda _: "segment-written")
    segments.seal = after(segments.seal, sealed)
    segments.check_segment = after(segments.check_segment, lambda _: "verified")
    repository.drop_archived_entries = after_async(repository.drop_archived_entries, "dropped")
    archiver._archive_segment = after_async(archiver._archive_segment, "committed")
    cli.main()


if __name__ == "__main__":
    main()
