"""The floors under the router: bare grpc.aio servers with none of the router's own work.

`python -m bench.bare_grpc --response FILE` serves /router.v1.Router/Route with the serialized
RouteResponse in FILE, without deserializing the request: what is left is grpc.aio itself.

`python -m bench.bare_grpc --forward URL --model ID` serves /router.v1.Router/Complete by
posting the request's messages to the chat completions endpoint at URL for model ID with
aiohttp (the router's HTTP client, with the key in BARE_UPSTREAM_KEY), and answering what came
back: a forwarder that chooses nothing, so what is left is grpc.aio, aiohttp and the JSON.

Prints `bare gRPC at HOST:PORT` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

import aiohttp
import grpc

from service.grpc_server import SERVICE_NAME
from service.pb.router.v1 import router_pb2 as pb

Handlers = dict[str, "grpc.RpcMethodHandler[bytes, bytes]"]


def answering(response: bytes) -> Handlers:
    async def route(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return response

    return {"Route": grpc.unary_unary_rpc_method_handler(route)}


def forwarding(http: aiohttp.ClientSession, url: str, model: str, key: str) -> Handlers:
    headers = {"Authorization": f"Bearer {key}"}

    async def complete(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        asked = pb.CompleteRequest.FromString(request)
        body = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in asked.messages],
        }
        async with http.post(url, json=body, headers=headers) as reply:
            reply.raise_for_status()
            answer = json.loads(await reply.read())
        message = answer["choices"][0]["message"]
        usage = answer.get("usage") or {}
        return pb.CompleteResponse(
            id=answer["id"],
            model=answer["model"],
            choices=[
                pb.Choice(
                    message=pb.ChatMessage(role=message["role"], content=message["content"]),
                    finish_reason=answer["choices"][0].get("finish_reason") or "",
                )
            ],
            usage=pb.Usage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
                total_tokens=usage.get("total_tokens", 0),
                cost_usd=usage.get("cost", 0.0),
            ),
        ).SerializeToString()

    return {"Complete": grpc.unary_unary_rpc_method_handler(complete)}


async def serve(port: int, args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as http:
        if args.forward:
            key = os.environ.get("BARE_UPSTREAM_KEY", "")
            handlers = forwarding(http, args.forward, args.model, key)
        else:
            handlers = answering(args.response.read_bytes())
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )
        address = f"127.0.0.1:{server.add_insecure_port(f'127.0.0.1:{port}')}"
        await server.start()
        print(f"bare gRPC at {address}", flush=True)
        await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--response", type=Path, help="answer Route with these bytes")
    what.add_argument("--forward", metavar="URL", help="forward Complete to this chat endpoint")
    parser.add_argument("--model", default="", help="the model --forward asks for")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args))


if __name__ == "__main__":
    main()
