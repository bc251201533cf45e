"""Serve the fake by hand: `python -m testkit.fake_openrouter --port 8089` from the repo root."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from . import ANY_MODEL, DEFAULT_KEY, FakeOpenRouter, Reply, load_models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testkit.fake_openrouter", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--models", help="a saved /models response or JSON list (default: fixture)")
    parser.add_argument("--key", action="append", help="an accepted API key (repeatable)")
    parser.add_argument("--balance", type=float, default=100.0, help="account balance in USD")
    parser.add_argument(
        "--first-token-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="every model waits this long before its first token (default: answers at once)",
    )
    args = parser.parse_args(argv)

    def terminate(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    fake = FakeOpenRouter(
        load_models(args.models),
        api_keys=args.key or [DEFAULT_KEY],
        balance_usd=args.balance,
        host=args.host,
        port=args.port,
    )
    if args.first_token_delay:
        fake.set_behaviour(ANY_MODEL, Reply(first_token_delay_s=args.first_token_delay))
    with fake:
        print(f"fake OpenRouter at {fake.base_url} ({len(fake.models)} models)", flush=True)
        print(f"API key: {(args.key or [DEFAULT_KEY])[0]}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)


if __name__ == "__main__":
    main()
