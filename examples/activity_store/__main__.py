"""``python -m examples.activity_store``: serve the store with settings from the environment."""

import sys

import uvicorn
from pydantic import ValidationError

from examples.activity_store.app import create_app
from examples.activity_store.config import get_settings


def main() -> None:
    try:
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "ACTIVITY_STORE_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"error: {name}: {error['msg']}", file=sys.stderr)
        print(
            "set ACTIVITY_STORE_ACLAUDIT_TOKEN to a check-scoped token "
            "(aclaudit token create --name activity-store --scope check)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
