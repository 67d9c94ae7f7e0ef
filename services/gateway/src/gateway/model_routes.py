"""The deployment's models (`GET /v1/models`), and the check every route that sets a
session's model and parameters makes against them."""

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from gateway.deps import ResourcesDep, UserDep
from shared.models import Catalogue, Price

router = APIRouter(tags=["models"])


class ModelInfo(BaseModel):
    id: str
    """What a session's `model` names."""
    name: str
    """What the model server is asked for."""
    label: str
    context_tokens: int
    max_tokens: int
    """A reply's length when its session sets none."""
    price: Price | None
    """US dollars per million tokens (None: no price configured)."""
    default: bool
    workers: int | None
    """Workers serving it now (None: not known)."""


class Models(BaseModel):
    models: list[ModelInfo]
    default: str


@router.get("/v1/models")
async def list_models(resources: ResourcesDep, user: UserDep) -> Models:
    """The models sessions may use, the default first, with how many workers serve each."""
    models = resources.models
    pools = resources.submissions.pools
    counts = pools.workers if pools else {}
    return Models(
        models=[
            ModelInfo(
                id=m.id,
                name=m.name,
                label=m.label,
                context_tokens=m.context_tokens,
                max_tokens=m.max_tokens,
                price=m.price,
                default=m is models.default,
                workers=counts.get(m.id),
            )
            for m in models.models
        ],
        default=models.default.id,
    )


def checked(
    models: Catalogue, model: str | None, temperature: float | None, max_tokens: int | None
) -> None:
    """Raises 422 with what would work when the catalogue cannot take these settings."""
    problem = models.check(model, temperature, max_tokens)
    if problem is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, problem)
