"""``python -m devstack.cluster up|down|status|running|env|build``."""

from __future__ import annotations

import argparse
import shlex
import sys

from . import build, control


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.cluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="build if needed and start every component")
    down = commands.add_parser("down", help="stop every component (no process left behind)")
    down.add_argument(
        "--purge", action="store_true", help="also delete etcd and Prometheus data (fresh cluster)"
    )
    commands.add_parser("status", help="state of each component (exit 3 unless all healthy)")
    commands.add_parser("running", help="names of this checkout's running components")
    commands.add_parser("env", help="print shell exports: eval $(python -m devstack.cluster env)")
    commands.add_parser("build", help="only build the binaries (no-op when cached)")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            info = control.up()
            print(f"export KUBECONFIG={shlex.quote(str(info.kubeconfig))}")
        elif args.command == "down":
            stopped = control.down(purge=args.purge)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.command == "status":
            rows = control.status()
            for row in rows:
                pid = str(row.pid) if row.pid else "-"
                detail = f"  {row.detail}" if row.detail and not row.healthy else ""
                print(f"{row.name:<24} {row.state:<10} pid {pid:<8}{detail}")
            return 0 if all(r.healthy for r in rows) else 3
        elif args.command == "running":
            for row in control.status():
                if row.pid is not None:
                    print(row.name)
        elif args.command == "env":
            for key, value in control.cluster_info().env().items():
                print(f"export {key}={shlex.quote(value)}")
        elif args.command == "build":
            build.ensure_built()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
