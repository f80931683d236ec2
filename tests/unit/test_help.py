"""`--help` of every command reads well, and a misspelt flag gets a suggestion."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from limpet.cli import build_parser, main


def parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    def walk(
        name: str, parser: argparse.ArgumentParser
    ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    yield from walk(f"{name} {sub}", child)

    yield from walk("limpet", build_parser())


PARSERS = dict(parsers())


@pytest.mark.parametrize("name", list(PARSERS))
def test_help_has_no_noise(name: str) -> None:
    text = PARSERS[name].format_help()
    assert "(default: None)" not in text
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", text), text
    # no placeholder spelt from a flag's name (HISTORY_SIZE): values are N, SECONDS, NAME ...
    assert not re.search(r"--[\w-]+ [A-Z]+_[A-Z_]+\b", text), text
    for action in PARSERS[name]._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{name} {action.option_strings[0]} has no help"


@pytest.mark.parametrize("name", ["limpet k8s lint", "limpet k8s render", "limpet k8s explain"])
def test_k8s_actions_have_descriptions(name: str) -> None:
    assert PARSERS[name].description


def test_help_keeps_useful_defaults() -> None:
    text = PARSERS["limpet hub"].format_help()
    assert "--listen HOST:PORT    address to serve on\n" in text  # required: no default shown
    assert "(default: the host name)" in text and "(default: 1000)" in text
    assert "--history-size N " in text and "--presence-ttl SECONDS" in text


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["proxy", "--listn", "127.0.0.1:1"], "did you mean --listen?"),
        (["hub", "--listen", "127.0.0.1:1", "--histroy-size", "5"], "did you mean --history-size?"),
        (["k8s", "render", "--target", "gke", "--cookie-tll", "60"], "did you mean --cookie-ttl?"),
    ],
)
def test_a_misspelt_flag_suggests_the_right_one(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {argv[-2] if argv[-1][0] != '-' else argv[-1]}" in err
    assert suggestion in err


def test_nothing_close_gets_no_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["hub", "--listen", "127.0.0.1:1", "--zzzzzz"])
    assert "did you mean" not in capsys.readouterr().err


def test_a_misspelt_required_flag_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse meets the missing --listen first; the misspelt word must still be named
    with pytest.raises(SystemExit) as exit_:
        main(["whoami", "--listn", "127.0.0.1:1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--listn" in err and "did you mean --listen?" in err


def test_the_suggestion_comes_first_not_after_the_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["proxy", "--listn", "127.0.0.1:1"])
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("limpet proxy: error: ") and "did you mean --listen?" in first
