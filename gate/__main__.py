"""`python -m gate`: start the gate (default) or manage it.

Each module in `COMMANDS` exposes `register(subparsers)` and adds its own
subcommands with `set_defaults(func=...)`; adding a command group is one line here.
"""
from __future__ import annotations

import argparse
import sys

import gate.audit
import gate.drills
import gate.identity_service
import gate.station
import gate.web.auth

COMMANDS = (gate.station, gate.web.auth, gate.audit, gate.identity_service, gate.drills)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0] not in sub.choices and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]   # `python -m gate [--port N]` starts the gate
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
