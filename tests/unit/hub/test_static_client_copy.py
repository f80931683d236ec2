"""The hub serves limpet-client.js from its static folder (pages load it from the hub itself);
it is a copy of clients/js/limpet-client.js, the npm package's source, and must not drift."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_hubs_copy_of_limpet_client_is_the_packages_source() -> None:
    package = (ROOT / "clients/js/limpet-client.js").read_bytes()
    served = (ROOT / "src/limpet/hub/static/limpet-client.js").read_bytes()
    assert served == package, "copy clients/js/limpet-client.js to src/limpet/hub/static/"
