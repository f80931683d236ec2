"""`limpet hub` flags that are refused before anything starts."""

from __future__ import annotations

import argparse

import pytest

from limpet.errors import UsageError
from limpet.hub.channels.payload import MAX_DEPTH_LIMIT
from limpet.hub.cli import configure, run


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(["--listen", "127.0.0.1:1", *argv])


@pytest.mark.parametrize("depth", ["0", str(MAX_DEPTH_LIMIT + 1), "5000"])
def test_max_depth_outside_what_every_python_parses_is_refused(depth: str) -> None:
    with pytest.raises(UsageError, match="--max-depth"):
        run(parse("--max-depth", depth))


def test_a_negative_gc_threshold_is_refused() -> None:
    with pytest.raises(UsageError, match="--gc-threshold"):
        run(parse("--gc-threshold", "-1"))


def test_the_gc_threshold_defaults_to_the_tuned_one() -> None:
    from limpet.hub.heap import DEFAULT_THRESHOLD

    assert parse().gc_threshold == DEFAULT_THRESHOLD
    assert parse("--gc-threshold", "0").gc_threshold == 0
