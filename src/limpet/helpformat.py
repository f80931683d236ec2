"""How every `limpet` command's --help reads: defaults shown only where they say something,
metavars that name the kind of value, and a suggestion for a misspelt flag."""

from __future__ import annotations

import argparse
import difflib
import functools
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn


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


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def _unknown(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[tuple[str, str]]:
    """``--flag`` words of ``argv`` this parser does not know, with their closest known flag."""
    known = list(_options(parser))
    out = []
    for word in argv:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            match = difflib.get_close_matches(flag, known, n=1)
            out.append((flag, match[0] if match else ""))
    return out


def _fail(parser: argparse.ArgumentParser, message: str, argv: Sequence[str]) -> NoReturn:
    """The error first, on one line, with the suggestion; then where to read every flag. (The
    usage of ``limpet proxy`` is 16 lines: printed first, it hid the line that mattered.)"""
    unknown = _unknown(parser, argv)
    missed = [flag for flag, _ in unknown if flag not in message]
    if missed:
        message += f"; unrecognized arguments: {' '.join(missed)}"
    hints = [hint for _, hint in unknown if hint]
    if hints and "did you mean" not in message:
        message += f"; did you mean {' '.join(hints)}?"
    sys.stderr.write(f"{parser.prog}: error: {message}\n({parser.prog} --help lists every flag)\n")
    sys.exit(2)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but an unknown flag is answered with the closest known one,
    whichever error argparse meets first (``limpet whoami --listn X`` is missing --listen)."""
    words = list(sys.argv[1:] if argv is None else argv)
    for each in _parsers(parser):
        each.error = functools.partial(_fail, each, argv=words)  # type: ignore[method-assign]
    args, extras = parser.parse_known_args(words)
    if extras:
        _fail(_chosen(parser, args), f"unrecognized arguments: {' '.join(extras)}", words)
    return args
