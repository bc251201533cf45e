"""How a routed chat request is answered: JSON or SSE, complete, cut short or broken."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

from starlette.responses import Response

from .behaviours import ErrorIn200, Fault, MidStreamError, Reply, ToolCall
from .billing import Outcome, settle
from .errors import json_response
from .exchange import Served
from .state import ALPHANUMERIC, FakeState
from .tokens import count_tokens, pieces
from .wire import DONE, PROCESSING, Frame, ScriptedResponse, fault_frames, partial_body, sse


def _tool_call_json(call: ToolCall) -> dict[str, Any]:
    arguments = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
    return {
        "id": call.id or "call_" + "".join(secrets.choice(ALPHANUMERIC) for _ in range(24)),
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def reply_outcome(served: Served, reply: Reply) -> Outcome:
    tool_calls = tuple(map(_tool_call_json, reply.tool_calls)) if served.ask.tools else ()
    content = reply.content
    if content is None:
        content = "" if tool_calls else served.default_text()
    finish = reply.finish_reason or ("tool_calls" if tool_calls else "stop")
    limit = served.ask.max_tokens
    if limit and reply.completion_tokens is None and count_tokens(content) > limit:
        content, finish = content[: limit * 4], "length"
    return settle(
        served,
        content,
        finish,
        reasoning=reply.reasoning,
        tool_calls=tool_calls,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )


def completion_json(
    served: Served, outcome: Outcome, error: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": outcome.content,
        "refusal": None,
        "reasoning": outcome.reasoning,
    }
    if outcome.tool_calls:
        message["tool_calls"] = [dict(call) for call in outcome.tool_calls]
    choice: dict[str, Any] = {
        "index": 0,
        "logprobs": None,
        "finish_reason": outcome.finish_reason,
        "native_finish_reason": outcome.finish_reason,
        "message": message,
    }
    if error is not None:
        choice["error"] = dict(error)
    return {
        "id": served.ask.generation_id,
        "object": "chat.completion",
        "created": served.ask.created,
        "model": served.model,
        "provider": served.endpoint.provider_name,
        "system_fingerprint": None,
        "choices": [choice],
        "usage": outcome.usage(),
    }


def _choice(delta: Mapping[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "index": 0,
        "delta": dict(delta),
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "logprobs": None,
    }


def _deltas(outcome: Outcome) -> list[dict[str, Any]]:
    """The streamed deltas: reasoning, then content, then each tool call's name and arguments."""
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": "", "reasoning": piece, "reasoning_details": []}
        for piece in pieces(outcome.reasoning or "")
    ]
    deltas += [
        {"role": "assistant", "content": piece, "reasoning": None, "reasoning_details": []}
        for piece in pieces(outcome.content)
    ]
    for index, call in enumerate(outcome.tool_calls):
        head = {"index": index, "id": call["id"], "type": "function"}
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        deltas.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{**head, "function": {"name": name, "arguments": ""}}],
            }
        )
        deltas.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"index": index, "function": {"arguments": arguments}}],
            }
        )
    return deltas


def _error_json(code: int, message: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata is not None:
        error["metadata"] = dict(metadata)
    return error


class Replier:
    """Answers a served attempt with its behaviour, and books the spend on the key."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def respond(
        self, served: Served, behaviour: Reply | ErrorIn200 | MidStreamError | Fault
    ) -> Response:
        headers = {"X-Generation-Id": served.ask.generation_id}
        stream = served.ask.stream
        if stream:
            headers |= {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if isinstance(behaviour, Reply):
            frames = (
                self._stream(served, behaviour) if stream else self._complete(served, behaviour)
            )
            return ScriptedResponse(frames, headers=headers, eager=stream)
        if isinstance(behaviour, ErrorIn200):
            error = _error_json(behaviour.code, behaviour.message, behaviour.metadata)
            if not stream:
                return json_response({"error": error, "user_id": served.ask.user_id}, 200, headers)
            return ScriptedResponse(
                self._stream_error(served, error, [], done=False), headers=headers, eager=True
            )
        if isinstance(behaviour, MidStreamError):
            return self._mid_stream_error(served, behaviour, headers)
        return self._fault(served, behaviour, headers)

    def _book(self, served: Served, outcome: Outcome) -> None:
        self.state.charge(served.ask.key, outcome.cost)

    async def _complete(self, served: Served, reply: Reply) -> AsyncGenerator[Frame, None]:
        outcome = reply_outcome(served, reply)
        await self.state.pause(reply.first_token_delay_s)
        await self.state.pause(reply.chunk_delay_s * max(0, len(_deltas(outcome)) - 1))
        self._book(served, outcome)
        yield json.dumps(completion_json(served, outcome), separators=(",", ":")).encode()

    def _chunk(self, served: Served, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return sse(
            {
                "id": served.ask.generation_id,
                "provider": served.endpoint.provider_name,
                "model": served.model,
                "object": "chat.completion.chunk",
                "created": served.ask.created,
                "choices": choices,
                **extra,
            }
        )

    async def _opening(self, first_token_delay_s: float) -> AsyncGenerator[Frame, None]:
        """Processing comments: one at once, then one per keep-alive interval while waiting."""
        config = self.state.config
        if config.processing_comments:
            yield PROCESSING
        deadline = time.monotonic() + first_token_delay_s
        while (left := deadline - time.monotonic()) > 0:
            await self.state.pause(min(left, config.keepalive_interval_s))
            if config.processing_comments and deadline > time.monotonic():
                yield PROCESSING

    async def _stream(self, served: Served, reply: Reply) -> AsyncGenerator[Frame, None]:
        outcome = reply_outcome(served, reply)
        async with aclosing(self._opening(reply.first_token_delay_s)) as opening:
            async for frame in opening:
                yield frame
        chunks = [self._chunk(served, [_choice(delta)]) for delta in _deltas(outcome)]
        if reply.burst:
            chunks = [b"".join(chunks)]
        for index, chunk in enumerate(chunks):
            if index:
                await self.state.pause(reply.chunk_delay_s)
            yield chunk
        finish = {"role": "assistant", "content": ""}
        yield self._chunk(served, [_choice(finish, outcome.finish_reason)])
        usage_choices = [_choice(finish)] if self.state.config.usage_chunk == "empty_delta" else []
        yield self._chunk(served, usage_choices, usage=outcome.usage())
        self._book(served, outcome)
        yield DONE

    def _content_chunks(self, served: Served, text: str | None, count: int) -> list[bytes]:
        delta: dict[str, Any] = {"role": "assistant", "reasoning": None, "reasoning_details": []}
        chosen = pieces(served.default_text() if text is None else text)[:count]
        return [self._chunk(served, [_choice({**delta, "content": piece})]) for piece in chosen]

    async def _stream_error(
        self, served: Served, error: Mapping[str, Any], chunks: list[bytes], *, done: bool
    ) -> AsyncGenerator[Frame, None]:
        if self.state.config.processing_comments:
            yield PROCESSING
        for chunk in chunks:
            yield chunk
        yield sse(
            {
                "id": served.ask.generation_id,
                "object": "chat.completion.chunk",
                "created": served.ask.created,
                "model": served.model,
                "provider": served.endpoint.provider_name,
                "error": dict(error),
                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
            }
        )
        if done:
            yield DONE

    def _mid_stream_error(
        self, served: Served, fault: MidStreamError, headers: Mapping[str, str]
    ) -> Response:
        error = _error_json(fault.code, fault.message, {"error_type": fault.error_type})
        text = served.default_text() if fault.content is None else fault.content
        partial = "".join(pieces(text)[: fault.after_chunks])
        outcome = settle(served, partial, "error")
        self._book(served, outcome)
        if not served.ask.stream:
            return json_response(completion_json(served, outcome, error), 200, headers)
        chunks = self._content_chunks(served, text, fault.after_chunks)
        return ScriptedResponse(
            self._stream_error(served, error, chunks, done=fault.done), headers=headers, eager=True
        )

    def _fault(self, served: Served, fault: Fault, headers: Mapping[str, str]) -> Response:
        if served.ask.stream:
            chunks = self._content_chunks(served, fault.content, fault.after_chunks)
            if self.state.config.processing_comments:
                chunks.insert(0, PROCESSING)
            return ScriptedResponse(
                fault_frames(self.state, fault, chunks), headers=headers, eager=True
            )
        text = served.default_text() if fault.content is None else fault.content
        body = json.dumps(completion_json(served, settle(served, text, "stop"))).encode()
        return partial_body(self.state, fault, body, headers)
