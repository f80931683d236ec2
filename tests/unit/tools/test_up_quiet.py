"""`limpet up` keeps redis-server's memory-overcommit warning out of the demo banner."""

from __future__ import annotations

from limpet.tools.up import worth_showing

# what redis-server 7 prints on a host with vm.overcommit_memory = 0
OVERCOMMIT = (
    "12345:M 26 Nov 2026 08:00:00.000 # WARNING Memory overcommit must be enabled! Without it, "
    "a background save or replication may fail under low memory condition."
)


def test_the_overcommit_warning_is_not_shown() -> None:
    assert not worth_showing(OVERCOMMIT)


def test_other_lines_are_shown() -> None:
    assert worth_showing("12345:M 26 Nov 2026 08:00:00.000 # Could not create server TCP listening")
    assert worth_showing("limpet hub 'hub-1' listening on http://127.0.0.1:9001/")
