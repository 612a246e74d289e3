from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class TrailEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    token_name: str | None = Field(
        description="The token's name, or for a person signed in with the company's OpenID "
        "Connect provider their principal (`user:<id>`)"
    )
    issuer: str | None = Field(
        default=None, description="The OpenID Connect provider of a person (null for tokens)"
    )
    method: str
    path: str
    query: str
    status: int
    request_id: str | None
    count: int = Field(
        description="Requests this entry stands for: 1, or for requests refused before their "
        "caller was authorised, how many were refused since the previous such entry."
    )


class TrailPage(BaseModel):
    items: list[TrailEntryRead]
    next_cursor: str | None
