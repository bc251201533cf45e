"""`make run`: `router serve` beside a redis-server of its own, stopped when the router stops.

`python -m cli.local_redis [SERVE OPTIONS]` starts redis-server on 127.0.0.1 and a free port,
without persistence, with its files in `<state dir>/redis`, runs `router serve` with
`ROUTER_REDIS_URL` pointing at it, passes SIGINT and SIGTERM on to the router and stops Redis
once the router has stopped. A configured `ROUTER_REDIS_URL` (or `redis_url`) is used as it is,
without a Redis of its own; so is a machine without redis-server, with a warning.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from cli.processes import free_port
from service.config import Settings

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def answers_ping(port: int) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """redis-server on loopback, answering PING, and its URL. In a session of its own, so that
    Ctrl-C reaches the router alone and Redis outlives the router's shutdown."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir.resolve()),
            "--pidfile", str((workdir / "redis.pid").resolve()),
            "--logfile", str((workdir / "redis.log").resolve()),
        ],
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not answers_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not start; see {workdir / 'redis.log'}")
            time.sleep(0.02)
    except BaseException:  # Ctrl-C too: no Redis is left behind
        stop(process)
        raise
    return process, f"redis://127.0.0.1:{port}/0"


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve(env: dict[str, str]) -> int:
    """`router serve` with this process's options until it stops; SIGINT and SIGTERM sent
    here are passed on to it."""
    router = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", *sys.argv[1:]], env=env, start_new_session=True
    )

    def pass_on(signum: int, frame: FrameType | None) -> None:
        router.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, pass_on)
    return router.wait()


def main() -> int:
    settings = Settings()
    binary = shutil.which("redis-server")
    if settings.redis_url:
        return serve(dict(os.environ))
    if binary is None:
        print("redis-server not found (make system-deps): serving without Redis", file=sys.stderr)
        return serve(dict(os.environ))
    redis, url = start_redis(binary, settings.state_dir / "redis")
    print(f"local Redis at {url} (no persistence)", file=sys.stderr)
    try:
        return serve({**os.environ, "ROUTER_REDIS_URL": url})
    finally:
        stop(redis)


if __name__ == "__main__":
    sys.exit(main())
