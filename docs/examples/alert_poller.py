"""Follow aclaudit's alert feed: every alert once, in order, across restarts of the poller.

    ACLAUDIT_URL=http://127.0.0.1:8000 \
    ACLAUDIT_ALERTS_TOKEN=$(aclaudit token create --name alerting --scope alerts:read) \
    python docs/examples/alert_poller.py

The feed's ids are assigned in commit order, so keeping the last id handled and asking for the
alerts after it never skips or repeats one. The id is saved after each alert is handled: if the
poller dies in between, that one alert is handled again on restart (dedupe on ``id`` if that
matters to the receiver).
"""

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

Alert = dict[str, Any]


def handle(alert: Alert) -> None:
    """Replace with a page, a ticket or a chat message."""
    print(f"#{alert['id']} [{alert['severity']}] {alert['type']}: {alert['summary']}", flush=True)


def poll_once(
    client: httpx.Client,
    last_id: int,
    on_alert: Callable[[Alert], None],
    save: Callable[[int], None],
) -> tuple[int, int]:
    """Handle every alert after ``last_id`` (one page); the new last id and how many."""
    r = client.get("/v1/alerts", params={"after": last_id, "limit": 500})
    r.raise_for_status()
    items = r.json()["items"]
    for alert in items:
        on_alert(alert)
        last_id = alert["id"]
        save(last_id)
    return last_id, len(items)


def main() -> None:
    state = Path(os.environ.get("ACLAUDIT_POLLER_STATE", "aclaudit-alerts.last_id"))

    def save(last_id: int) -> None:
        tmp = state.with_suffix(".tmp")
        tmp.write_text(str(last_id))
        tmp.replace(state)  # atomic: a crash never leaves a half-written id

    last_id = int(state.read_text()) if state.exists() else 0
    headers = {"Authorization": f"Bearer {os.environ['ACLAUDIT_ALERTS_TOKEN']}"}
    url = os.environ.get("ACLAUDIT_URL", "http://127.0.0.1:8000")
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10.0)) as client:
        while True:
            try:
                last_id, handled = poll_once(client, last_id, handle, save)
            except httpx.HTTPError as exc:  # service restarting, network: try again
                print(f"poll failed, retrying: {exc!r}", flush=True)
                handled = 0
            if handled == 0:
                time.sleep(2)


if __name__ == "__main__":
    main()
