"""How every `limpet` command's --help reads: defaults shown only where they say something,
metavars that name the kind of value, and a suggestion for a misspelt flag."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterator, Sequence


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter without its noise: no "(default: None)" after a required
    flag or a switch, no second default when the help already names one; numbers get N or
    SECONDS instead of a placeholder spelt from the flag (HISTORY_SIZE)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        quiet = (
            action.required
            or not action.option_strings
            or action.default in (None, False, True, [], "", argparse.SUPPRESS)
            or "default" in text.lower()
            or action.nargs == 0
        )
        return text if quiet else super()._get_help_string(action)

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        if action.type in (int, float):
            return "SECONDS" if "second" in (action.help or "").lower() else "N"
        return action.dest.rsplit("_", 1)[-1].upper()


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser that read the last word of the command: ``limpet k8s lint`` -> lint's."""
    while True:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = getattr(args, action.dest, None)
                if name in action.choices:
                    parser = action.choices[name]
                    break
        else:
            return parser


def _options(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        yield from (o for o in action.option_strings if o.startswith("--"))


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but an unknown flag is answered with the closest known one."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        chosen = _chosen(parser, args)
        known = list(_options(chosen))
        hints = [
            match[0]
            for extra in extras
            if extra.startswith("--")
            and (match := difflib.get_close_matches(extra.split("=", 1)[0], known, n=1))
        ]
        hint = f"; did you mean {' '.join(hints)}?" if hints else ""
        chosen.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
    return args
