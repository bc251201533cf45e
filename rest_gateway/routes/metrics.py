from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics of this process (the router's, when the gateway runs beside it)."""
    return Response(content=generate_latest(), media_type=CONTENT_TYPE_LATEST)
