"""The floor under gRPC Route: a bare grpc.aio server whose Route answers fixed bytes.

`python -m bench.bare_grpc --port P --response FILE` serves /router.v1.Router/Route with the
serialized RouteResponse in FILE, without deserializing the request: what is left is grpc.aio
itself. Prints `bare gRPC at HOST:PORT` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc

from service.grpc_server import SERVICE_NAME


async def serve(port: int, response: bytes) -> None:
    async def route(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return response

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME, {"Route": grpc.unary_unary_rpc_method_handler(route)}
    )
    server.add_generic_rpc_handlers((handler,))
    address = f"127.0.0.1:{server.add_insecure_port(f'127.0.0.1:{port}')}"
    await server.start()
    print(f"bare gRPC at {address}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--response", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.response.read_bytes()))


if __name__ == "__main__":
    main()
