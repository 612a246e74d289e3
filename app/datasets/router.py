from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.auth.dependencies import AuditReader, AuthorizedFirst, PolicyWriter
from app.datasets import service as datasets_service
from app.datasets.schemas import DatasetPage, DatasetRead, DatasetWrite
from app.db import SessionDep
from app.errors import Forbidden, NotFound, Unauthenticated, problem_responses
from app.exposure import service as exposure_service
from app.exposure.schemas import DatasetChanged
from app.identifiers import DatasetId
from app.pagination import DEFAULT_LIMIT, Cursor, Limit

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=AuthorizedFirst)
DatasetPath = Annotated[DatasetId, Path(description="A dataset id.")]


@router.put(
    "/{dataset}",
    response_model=DatasetChanged,
    responses={
        201: {"model": DatasetChanged, "description": "Created"},
        **problem_responses(Unauthenticated, Forbidden),
    },
)
async def put_dataset(
    dataset: DatasetPath,
    body: DatasetWrite,
    session: SessionDep,
    caller: PolicyWriter,
    response: Response,
) -> DatasetChanged:
    """Register or replace a dataset: 201 when created, 200 when replaced. Its exposure is
    analysed at once; the findings opened and resolved come back with it."""
    result, created, changes = await exposure_service.put_dataset(
        session, dataset_id=dataset, body=body, actor=caller.name
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return DatasetChanged(**result.model_dump(), **changes.model_dump())


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
