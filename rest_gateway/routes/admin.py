from __future__ import annotations

from fastapi import APIRouter, Response

from rest_gateway.deps import BackendDep, json_response
from rest_gateway.proto_models import response_model
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(prefix="/admin", tags=["operations"])


@router.post(
    "/catalogue/refresh", response_model=response_model(pb.RefreshCatalogueResponse.DESCRIPTOR)
)
async def refresh_catalogue(backend: BackendDep) -> Response:
    """Fetch OpenRouter's catalogue now. A failed or implausible listing keeps the catalogue
    being served: `replaced` is then false and `catalogue.last_refresh_error` says why."""
    return json_response(await backend.refresh())
