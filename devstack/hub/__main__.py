"""``python -m devstack.hub [--host 127.0.0.1] [--port 58080]``: serve the local Hub."""

from __future__ import annotations

import argparse
import contextlib

from devstack.hub.server import DEFAULT_HOST, DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.hub",
        description="Local Hugging Face Hub-compatible server with fixture models.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default: loopback)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (0 = any free port; default 58080)"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
