"""`FakeOpenRouter`: the app served by uvicorn on loopback, in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Self

import uvicorn

from .app import create_app
from .behaviours import ChatBehaviour, ModelsBehaviour
from .catalogue import Model, load_models
from .providers import Percentiles
from .state import ANY_MODEL, DEFAULT_KEY, KEEP, FakeConfig, FakeState, Keep, RecordedRequest

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class FakeOpenRouter:
    """OpenRouter's HTTP API on `127.0.0.1:<port>` (port 0: any free one) until `stop()`."""

    def __init__(
        self,
        models: Iterable[Mapping[str, Any]] | None = None,
        api_keys: Iterable[str] = (DEFAULT_KEY,),
        balance_usd: float = 100.0,
        *,
        config: FakeConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        rows = load_models() if models is None else [dict(row) for row in models]
        self._state = FakeState(rows, api_keys, balance_usd, config or FakeConfig())
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/v1"

    @property
    def config(self) -> FakeConfig:
        return self._state.config

    @property
    def models(self) -> list[Model]:
        """A copy of the catalogue served now."""
        return copy.deepcopy(self._state.catalogue.rows)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._state.requests()

    @property
    def cut_short(self) -> list[RecordedRequest]:
        """Requests whose connection closed before their response was complete: the client went
        away (a stream it stopped reading), or a `Reset` or `Drop` cut it."""
        return self._state.requests_cut_short()

    @property
    def spent_usd(self) -> float:
        return self._state.spent()

    def reset(self) -> None:
        """Back to the state just after construction: catalogue, balance, config, scripts,
        endpoint figures and recorded requests (and those cut short)."""
        self._state.reset()

    def script(self, model_id: str, *behaviours: ChatBehaviour) -> None:
        """Queue behaviours for `model_id` (or `ANY_MODEL`), one consumed per attempt on it."""
        self._state.script(self._key(model_id), behaviours)

    def set_behaviour(self, model_id: str, behaviour: ChatBehaviour | None) -> None:
        """What `model_id` does whenever its queue is empty (None: reply normally)."""
        self._state.set_behaviour(self._key(model_id), behaviour)

    def set_models(self, models: Iterable[Mapping[str, Any]]) -> None:
        self._state.set_models(models)

    def script_models(self, *behaviours: ModelsBehaviour) -> None:
        """Queue behaviours for the next `GET /models` calls, one per call."""
        self._state.script_models(behaviours)

    def set_balance(self, usd: float) -> None:
        """Make the account's remaining balance `usd` (credits minus spend so far)."""
        self._state.set_balance(usd)

    def set_endpoint_stats(
        self,
        model_id: str,
        *,
        provider: str | None = None,
        latency_ms: float | Percentiles | Keep | None = KEEP,
        throughput: float | Percentiles | Keep | None = KEEP,
        uptime: float | Keep | None = KEEP,
    ) -> None:
        """Set the figures `/endpoints` reports (and `provider.sort` uses) for every endpoint of
        `model_id`, or those matching `provider`. A number is the p50 (time to first token in ms,
        output tokens per second); p75..p99 are derived. None reports null."""
        self._state.set_endpoint_stats(model_id, provider, latency_ms, throughput, uptime)

    def _key(self, model_id: str) -> str:
        if model_id == ANY_MODEL:
            return model_id
        resolution = self._state.catalogue.resolve(model_id)
        if resolution is None:
            raise KeyError(f"{model_id} is not in the fake's catalogue")
        return str(resolution.row["id"])

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the fake OpenRouter is already running")
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets, else small responses
        # wait 40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self._state),
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._state.closing = asyncio.Event()
        thread = threading.Thread(
            target=self._serve, args=(server, sock), name="fake-openrouter", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake OpenRouter did not start")
            time.sleep(0.005)

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        with asyncio.Runner() as runner:
            self._loop = runner.get_loop()
            runner.run(server.serve(sockets=[sock]))

    def stop(self) -> None:
        """Stop serving; stalled and slow responses are cut, so this takes well under a second."""
        thread, server, loop = self._thread, self._server, self._loop
        if thread is None or server is None:
            return
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(self._state.closing.set)
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(STOP_TIMEOUT_S)
        self._thread = self._server = self._loop = None
        if thread.is_alive():
            raise RuntimeError("the fake OpenRouter did not stop")
