from __future__ import annotations

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rest_gateway.deps import Stub
from rest_gateway.schemas import as_json
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT_S = 2.0


@router.get("/health")
async def health(request: Request, stub: Stub) -> JSONResponse:
    """SERVING when the router's gRPC service answers its health check, else 503; with the
    catalogue being served, how many of its models a default route may use (`eligibility`)
    and how its refreshes go (`stale` when they keep failing); and the free variants'
    allowance (`free_quota`: limits, use, and until when free variants are left out)."""
    health_stub = health_pb2_grpc.HealthStub(request.app.state.channel)
    try:
        reply = await health_stub.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_TIMEOUT_S)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        router_status = await stub.GetStatus(pb.GetStatusRequest(), timeout=CHECK_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        return JSONResponse(status_code=503, content={"status": f"UNREACHABLE ({exc.code().name})"})
    body = {
        "status": status,
        "catalogue": as_json(router_status.catalogue),
        "free_quota": as_json(router_status.free_quota),
    }
    return JSONResponse(status_code=200 if status == "SERVING" else 503, content=body)
