"""``python -m examples.activity_store``: serve the store with settings from the environment."""

import uvicorn

from examples.activity_store.app import create_app
from examples.activity_store.config import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
