"""A bounded run of the coverage-guided fuzzer on the wire core (tests/fuzz/wire_fuzz.py): no
crash, no hang (libFuzzer's -timeout), no growth past -rss_limit_mb, the two cores agreeing."""

from __future__ import annotations

from tests.support.fuzz import fuzz_for_a_few_seconds, needs_atheris


@needs_atheris
def test_fuzz_the_wire_core_for_a_few_seconds() -> None:
    fuzz_for_a_few_seconds("wire_fuzz.py")
