"""The command line: a thin table of subcommands; each lives in its own module.

Every subcommand module exposes ``configure(parser)`` (flags only, cheap imports) and
``run(args) -> int`` (imports what it needs). Only the chosen command's heavy parts load.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from limpet import __version__
from limpet.errors import LimpetError
from limpet.helpformat import HelpFormatter, parse

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "proxy": ("limpet.proxy.cli", "sticky-session HTTP/WebSocket (and TCP) load balancer"),
    "hub": ("limpet.hub.cli", "socket.io channel server on a shared broker"),
    "whoami": ("limpet.tools.whoami", "demo backend that says who it is"),
    "check": ("limpet.tools.check", "is this endpoint really sticky?"),
    "up": ("limpet.tools.up", "local cluster in one command"),
    "k8s": ("limpet.k8s.cli", "render and lint Kubernetes sticky-session settings"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="limpet",
        description="Scale stateful realtime services (socket.io, WebSocket) across replicas.",
    )
    parser.add_argument("--version", action="version", version=f"limpet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # a part not built into this installation
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=HelpFormatter,
        )
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return int(run(args) or 0)
    except LimpetError as exc:
        # one line per error (a config file with several wrong keys lists each)
        for line in str(exc).splitlines() or [""]:
            print(f"limpet {args.command}: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
