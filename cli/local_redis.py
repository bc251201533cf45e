"""`make run`: `router serve` beside a redis-server of its own, stopped when the router stops.

`python -m cli.local_redis [SERVE OPTIONS]` starts redis-server on 127.0.0.1 and a free port,
without persistence, with its files in `<state dir>/redis`, runs `router serve` with
`ROUTER_REDIS_URL` pointing at it, passes SIGINT and SIGTERM on to the router and stops Redis
once the router has stopped. A configured `ROUTER_REDIS_URL` (or `redis_url`) is used as it is,
without a Redis of its own; so is a machine without redis-server, with a warning.
"""

from __future__ import annotations

import os
import re
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
BIND_ATTEMPTS = 5
PROCESS_ID = re.compile(rb"process_id:(\d+)\r\n")
STOP_TIMEOUT_S = 10.0


def serving_pid(port: int) -> int | None:
    """The process id of the Redis that answers on 127.0.0.1:`port`, if one does."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
                if found := PROCESS_ID.search(reply):
                    return int(found[1])
    except OSError:
        pass
    return None


def start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """redis-server on loopback, answering, and its URL. In a session of its own, so that
    Ctrl-C reaches the router alone and Redis outlives the router's shutdown. On a free port,
    or another one when that was taken before Redis could bind it."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "redis.log").resolve()
    for _ in range(BIND_ATTEMPTS):
        logged = log.stat().st_size if log.exists() else 0
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
                "--logfile", str(log),
            ],
            start_new_session=True,
        )  # fmt: skip
        try:
            pid = _answering(process, port)
        except BaseException:  # Ctrl-C too: no Redis is left behind
            stop(process)
            raise
        if pid == process.pid:
            return process, f"redis://127.0.0.1:{port}/0"
        stop(process)
        if pid is None and not _bind_failed(log, logged):  # another Redis answering took it
            break
    raise SystemExit(f"redis-server did not start; see {log}")


def _bind_failed(log: Path, since: int) -> bool:
    """Whether Redis wrote to `log`, past its first `since` bytes, that its port was taken."""
    if not log.exists():
        return False
    with log.open("rb") as written:
        written.seek(since)
        return b"Address already in use" in written.read()


def _answering(process: subprocess.Popen[bytes], port: int) -> int | None:
    """The process id of the first Redis to answer on `port` while `process` runs (another
    Redis may have taken the port); None when none did before it exited or timed out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        if (pid := serving_pid(port)) is not None:
            return pid
        time.sleep(0.02)
    return None


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
