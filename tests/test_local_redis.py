"""`make run` (`python -m cli.local_redis`): the router beside a redis-server of its own, which
stops with it; or beside the Redis `ROUTER_REDIS_URL` names."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.redis_server import RedisServer
from tests.test_serve import started, stopped

MODULE = "cli.local_redis"
POLLS = 500


def _environment(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ROUTER_REDIS_URL"}
    return env | {
        "ROUTER_STATE_DIR": str(state),
        "ROUTER_REFRESH_INTERVAL_S": "0",
        "ROUTER_ENDPOINT_STATS_MODELS": "0",
        **extra,
    }


SERVE = ["--grpc-port", "0", "--http-port", "0", "--host", "127.0.0.1"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="make system-deps")
def test_make_run_starts_a_redis_of_its_own_and_stops_it(tmp_path: Path) -> None:
    env = _environment(tmp_path / "state")
    log = tmp_path / "output.log"
    process, ports = started(SERVE, log, env, module=MODULE)
    try:
        base = f"http://127.0.0.1:{ports['http']}"
        assert httpx.get(f"{base}/health").json()["redis"] == "connected"
        decision = httpx.post(f"{base}/route", json={"mode": "speed"}).json()
        found = httpx.get(f"{base}/decisions/{decision['decision_id']}")
        assert found.json()["response"]["model"] == decision["model"]
        pid = int((tmp_path / "state" / "redis" / "redis.pid").read_text())
        assert _alive(pid)
    finally:
        output = stopped(process, log)
    assert "local Redis at redis://127.0.0.1:" in output
    assert not _alive(pid)


def test_a_configured_redis_url_is_used_instead(tmp_path: Path, redis_server: RedisServer) -> None:
    env = _environment(tmp_path / "state", ROUTER_REDIS_URL=redis_server.url)
    log = tmp_path / "output.log"
    process, ports = started(SERVE, log, env, module=MODULE)
    try:
        base = f"http://127.0.0.1:{ports['http']}"
        assert httpx.get(f"{base}/health").json()["redis"] == "connected"
        decision_id = httpx.post(f"{base}/route", json={}).json()["decision_id"]
        assert not (tmp_path / "state" / "redis").exists()
        with redis.Redis.from_url(redis_server.url) as client:
            for _ in range(POLLS):
                if client.exists(f"router:decision:{decision_id}"):
                    break
                time.sleep(0.01)
            else:
                raise AssertionError("the decision never reached the configured Redis")
    finally:
        stopped(process, log)
    assert redis_server.running
