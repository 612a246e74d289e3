from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.auth.dependencies import AuditReader, AuthorizedFirst, PolicyWriter
from app.datasets import service as datasets_service
from app.datasets.schemas import DatasetPage, DatasetRead, DatasetWrite
from app.db import SessionDep
from app.errors import Conflict, Forbidden, NotFound, Unauthenticated, problem_responses
from app.exposure import dataset_change
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
        **problem_responses(Unauthenticated, Forbidden, Conflict),
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
    analysed at once; the findings opened and resolved come back with it.

    An omitted `guard` keeps the stored one (a new dataset takes the default). On a block
    dataset, a change that lets anyone new in beyond the audience is refused (409) unless
    `accept_exposure`; so is lowering the guard to `alert`, and raising it to `block` while
    findings are open (accepted, the open findings become accepted). Every guard change
    raises a `dataset.guard_changed` alert."""
    result, created, changes, moved = await dataset_change.put_dataset(
        session, dataset_id=dataset, body=body, actor=caller.name
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return DatasetChanged(**result.model_dump(), **changes.model_dump(), guard_changed=moved)


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
