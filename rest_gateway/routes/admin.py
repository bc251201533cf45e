from __future__ import annotations

from fastapi import APIRouter

from rest_gateway.deps import Stub
from rest_gateway.schemas import RefreshResult, as_json
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(prefix="/admin", tags=["operations"])


@router.post("/catalogue/refresh", response_model=RefreshResult)
async def refresh_catalogue(stub: Stub) -> RefreshResult:
    """Fetch OpenRouter's catalogue now. A failed or implausible listing keeps the catalogue
    being served: `replaced` is then false and `catalogue.last_refresh_error` says why."""
    reply = await stub.RefreshCatalogue(pb.RefreshCatalogueRequest())
    return RefreshResult.model_validate(as_json(reply))
