"""A real redis-server on loopback for the tests, which can be killed and restarted mid-test.

Use the `redis_server` fixture (register it in conftest.py, or import it into a test module),
or `RedisServer` directly; its `options` and `config` make it ask for a password, serve TLS or
run as a Sentinel. No persistence: a restarted server starts empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from testkit.servers import free_port

START_TIMEOUT_S = 10.0
BIND_ATTEMPTS = 5


class RedisServer:
    """redis-server on 127.0.0.1:`port`, without persistence, with its files in `workdir`.
    `options` are more command-line options (later ones win), `config` the text of a config
    file to start from (a Sentinel needs one it can rewrite), `url` how to reach it (default:
    redis:// on `port`); `{port}` in `options` and `url` stands for the port. It is ready once a
    client on `url` gets an answer to PING. Without `port` it takes a free one, and another
    one if that was taken before the server could bind it."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        options: Sequence[str] = (),
        config: str = "",
        url: str = "redis://127.0.0.1:{port}/0",
    ) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self._may_move = port is None  # until it first serves
        self._url = url
        self.options = list(options)
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self._url.format(port=self.port)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.running:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (make system-deps)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "redis.conf"
        config.write_text(self.config)
        log_path = self.workdir / "redis.log"  # appended to across restarts, to read on failure
        for _ in range(BIND_ATTEMPTS):
            logged = log_path.stat().st_size if log_path.exists() else 0
            with log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [
                        binary,
                        str(config),
                        "--bind", "127.0.0.1",
                        "--port", str(self.port),
                        "--save", "",
                        "--appendonly", "no",
                        "--dir", str(self.workdir),
                        *(option.format(port=self.port) for option in self.options),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            if self._wait_until_ready():
                self._may_move = False
                return
            with log_path.open("rb") as log:
                log.seek(logged)
                taken = b"Address already in use" in log.read()
            if not (taken and self._may_move):
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _wait_until_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.answers_ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                return False
            time.sleep(0.01)
        return True

    def answers_ping(self) -> bool:
        try:
            with redis.Redis.from_url(
                self.url,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 0),
            ) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), like a crash: clients see refused connections."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()  # SIGKILL also ends a paused process
            self._process.wait(timeout=10)
            self._process = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it takes connections but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze the server (SIGCONT): it then runs what it was sent meanwhile."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class LossyProxy:
    """A TCP proxy on loopback in front of a Redis, to lose replies the way a network can:
    while `lose_replies_to` is set, a connection that sends a command containing those bytes
    has Redis run it but hears nothing back, ever again. Use as `async with`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lose_replies_to: bytes | None = None
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> LossyProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.append(to_client)
        upstream, to_upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.append(to_upstream)
        muted = False

        async def relay_replies() -> None:
            while data := await upstream.read(65536):
                if not muted:
                    to_client.write(data)
                    await to_client.drain()

        replies = asyncio.create_task(relay_replies())
        try:
            while data := await client.read(65536):
                if self.lose_replies_to is not None and self.lose_replies_to in data:
                    muted = True
                to_upstream.write(data)
                await to_upstream.drain()
        except ConnectionError:
            pass
        finally:
            replies.cancel()
            await asyncio.gather(replies, return_exceptions=True)
            for writer in (to_client, to_upstream):
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            self._handlers.discard(handler)


class SilentRedis:
    """A loopback TCP port that takes connections and never replies: a Redis that hangs. Use as
    `with`; `url` is its redis:// URL."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.setblocking(False)
        self._accepted: list[socket.socket] = []
        self.url = f"redis://127.0.0.1:{self._sock.getsockname()[1]}/0"

    def connections(self) -> int:
        """How many connections clients have opened so far (each already in the kernel's
        backlog when the client's connect returned)."""
        while True:
            try:
                self._accepted.append(self._sock.accept()[0])
            except BlockingIOError:
                return len(self._accepted)

    def __enter__(self) -> SilentRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in [*self._accepted, self._sock]:
            sock.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server for one test; the test may kill and restart it."""
    with RedisServer(tmp_path / "redis") as server:
        yield server
