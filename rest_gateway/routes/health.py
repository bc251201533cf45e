from __future__ import annotations

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT_S = 2.0


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """SERVING when the router's gRPC service answers its health check, else 503."""
    stub = health_pb2_grpc.HealthStub(request.app.state.channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_TIMEOUT_S)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.aio.AioRpcError as exc:
        status = f"UNREACHABLE ({exc.code().name})"
    code = 200 if status == "SERVING" else 503
    return JSONResponse(status_code=code, content={"status": status})
