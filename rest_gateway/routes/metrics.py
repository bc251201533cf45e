from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics of this process's registry. Under `router serve` the gateway runs
    beside the router, so these are the router's: its gRPC and REST traffic alike. A gateway in
    front of a remote router (`router gateway --target`) shows only its own process: scrape the
    `/metrics` of the `router serve` behind it for the router's figures."""
    return Response(content=generate_latest(), media_type=CONTENT_TYPE_LATEST)
