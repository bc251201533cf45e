from __future__ import annotations

from fastapi import APIRouter, Response

from rest_gateway.deps import BackendDep, json_response
from rest_gateway.proto_models import to_json
from service.errors import ErrorKind, RouterError

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health(backend: BackendDep) -> Response:
    """SERVING when the router serves, else 503; with the catalogue being served, how many of
    its models a default route may use (`eligibility`) and how its refreshes go (`stale` when
    they keep failing); and the free variants' allowance (`free_quota`: limits, use, and until
    when free variants are left out); and the router's Redis (`redis`: connected, degraded
    while it does not answer, or off). Needs no key; behind a gateway in front of a router that
    checks keys, the details need one."""
    try:
        if not await backend.serving():
            return json_response({"status": "NOT_SERVING"}, status_code=503)
        status = await backend.status()
    except RouterError as error:
        if error.kind is ErrorKind.UNAUTHENTICATED:
            # A remote router that checks keys serves; its details are for callers with one.
            return json_response({"status": "SERVING"})
        return json_response({"status": f"UNREACHABLE ({error.kind.value})"}, status_code=503)
    body = {
        "status": "SERVING",
        "catalogue": to_json(status.catalogue),
        "free_quota": to_json(status.free_quota),
        "redis": status.redis,
    }
    return json_response(body)
