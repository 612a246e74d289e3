from fastapi import APIRouter

from app.auth.dependencies import AuditReader, AuthorizedFirst
from app.datasets import service as datasets_service
from app.datasets.schemas import DatasetPage, DatasetPath, DatasetRead
from app.db import SessionDep
from app.errors import Forbidden, NotFound, Unauthenticated, problem_responses
from app.pagination import DEFAULT_LIMIT, Cursor, Limit

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=AuthorizedFirst)


@router.get("", response_model=DatasetPage, responses=problem_responses(Unauthenticated, Forbidden))
async def list_datasets(
    session: SessionDep, _: AuditReader, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> DatasetPage:
    items, next_cursor = await datasets_service.list_datasets(session, after=cursor, limit=limit)
    return DatasetPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{dataset}",
    response_model=DatasetRead,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound),
)
async def get_dataset(dataset: DatasetPath, session: SessionDep, _: AuditReader) -> DatasetRead:
    return await datasets_service.get_dataset(session, dataset)
