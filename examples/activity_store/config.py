"""Settings from ``ACTIVITY_STORE_*`` environment variables."""

from functools import lru_cache

from pydantic import Field, HttpUrl, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACTIVITY_STORE_")

    aclaudit_url: HttpUrl = Field(
        default=HttpUrl("http://127.0.0.1:8000"), description="Where aclaudit listens."
    )
    aclaudit_token: SecretStr = Field(
        min_length=1,
        description="An aclaudit token with the `check` scope "
        "(`aclaudit token create --name activity-store --scope check`).",
    )
    aclaudit_timeout: float = Field(
        default=2.0, gt=0, le=30, description="Seconds to wait for a decision before denying."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=1, le=65535)
    page_size: int = Field(default=20, ge=1, le=200, description="Subjects per page by default.")


@lru_cache
def get_settings() -> StoreSettings:
    return StoreSettings()  # the token comes from the environment
