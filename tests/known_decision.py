"""A decision a test router knows by id, for tests that call every RPC and every path."""

from __future__ import annotations

from service.pb.router.v1 import router_pb2 as pb
from testkit.servers import ServerThread

KNOWN_DECISION_ID = "d" * 32


def plant_decision(server: ServerThread) -> None:
    """Record a decision of id `KNOWN_DECISION_ID` on `server`, as a Route would."""

    async def record() -> None:
        server.runtime.records.decided(
            pb.RouteRequest(mode=pb.MODE_SPEED),
            pb.RouteResponse(model="openai/gpt-4o-mini", decision_id=KNOWN_DECISION_ID),
        )

    server.loops.run(record())
