"""Canary groups through a real `limpet proxy` (cookie affinity) to `limpet whoami` backends:
two stable, one canary, the canary at 10 %.

- new sessions land 10 % ± 3 % on the canary (the twin: without groups a third would);
- pinned sessions never move, also when the canary's weight changes (``POST /canary``);
- a rollback (``POST /canary?weight=0``) moves every canary session at the rebalance rate: its
  next request is answered (nothing lost) by a stable backend, with a fresh cookie, and
  ``limpet_rebalance_moves_total{reason="rollback"}`` counts them.
"""

from __future__ import annotations

import http.client
import time
from collections import Counter
from typing import Any

from tests.support.admin import admin_get, admin_post
from tests.support.procs import Procs, free_port, wait_listening

SESSIONS = 100
TOKEN = "canary-admin-token"


class Rig:
    def __init__(self, procs: Procs, *, canary: bool) -> None:
        urls = {name: procs.whoami(name) for name in ("s1", "s2", "c1")}
        self.port, self.admin_port = free_port(), free_port()
        token = procs.tmp / "token"
        token.write_text(TOKEN + "\n")
        group = ", group: canary" if canary else ""
        config = procs.tmp / "proxy.yaml"
        config.write_text(
            f"listeners: ['127.0.0.1:{self.port}']\n"
            f"admin: 127.0.0.1:{self.admin_port}\n"
            f"admin-token-file: {token}\n"
            "secret: canary-secret\n"
            "pools:\n"
            "  web:\n"
            "    affinity: {mode: cookie}\n"
            "    health: {interval: 0.5}\n"
            "    rebalance: {enabled: false, rate: 50, max-moving: 1.0, settle: 1}\n"
            + ("    canary: 10\n" if canary else "")
            + "    backends:\n"
            + "".join(
                f"      - {{id: {n}, url: '{u}'{group if n == 'c1' else ''}}}\n"
                for n, u in urls.items()
            )
        )
        proxy = procs.limpet("proxy", "--config", str(config), wait_for=("127.0.0.1", self.port))
        wait_listening("127.0.0.1", self.admin_port, proc=proxy, timeout=20)
        deadline = time.monotonic() + 20
        while not all(b["seen_up"] for b in self.status()["backends"]):
            assert time.monotonic() < deadline, self.status()
            time.sleep(0.1)

    def status(self) -> dict[str, Any]:
        pool: dict[str, Any] = admin_get(self.admin_port, "/status")["pools"][0]
        return pool

    def get(self, cookie: str | None = None) -> tuple[int, str, str | None]:
        """(status, backend name, the cookie value set, if any)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Cookie": f"limpet={cookie}"} if cookie else {})
            resp = conn.getresponse()
            body = resp.read().decode()
            set_cookie = resp.getheader("Set-Cookie")
            value = set_cookie.split(";")[0].split("=", 1)[1] if set_cookie else None
            return resp.status, body.splitlines()[0], value
        finally:
            conn.close()

    def canary(self, weight: int) -> tuple[int, dict[str, Any]]:
        return admin_post(self.admin_port, f"/canary?pool=web&weight={weight}", TOKEN)


def new_sessions(rig: Rig, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        status, backend, cookie = rig.get()
        assert status == 200 and cookie is not None
        out.append((cookie, backend))
    return out


def test_canary_split_pins_and_rollback(procs: Procs) -> None:
    rig = Rig(procs, canary=True)
    sessions = new_sessions(rig, SESSIONS)
    on_canary = sum(b == "c1" for _, b in sessions)
    assert abs(on_canary - SESSIONS * 0.10) <= SESSIONS * 0.03, on_canary

    def pinned() -> None:
        for cookie, backend in sessions:
            status, again, fresh = rig.get(cookie)
            assert (status, again, fresh) == (200, backend, None)

    pinned()
    assert rig.canary(20)[0] == 200  # reweigh: new sessions follow, pinned ones stay
    pinned()
    later = new_sessions(rig, 50)
    assert Counter(b for _, b in later)["c1"] == 10, later

    code, body = rig.canary(0)  # rollback
    assert code == 200 and body["weights"] == {"stable": 100, "canary": 0}, body
    canary = [c for c, b in sessions + later if b == "c1"]
    for cookie, backend in later:  # their first request since the handshake: still pinned
        assert rig.get(cookie)[:2] == (200, backend)
    deadline = time.monotonic() + 20
    while rig.status()["rebalance"]["moves"].get("rollback", 0) < len(canary):
        assert time.monotonic() < deadline, rig.status()["rebalance"]
        time.sleep(0.1)
    for cookie in canary:
        status, backend, fresh = rig.get(cookie)
        assert status == 200 and backend in ("s1", "s2") and fresh not in (None, cookie)
    c1 = next(b for b in rig.status()["backends"] if b["id"] == "c1")
    assert c1["sessions"] == 0 and c1["group"] == "canary", c1
    assert rig.canary(150)[0] == 400


def test_twin_without_groups_a_third_lands_on_the_would_be_canary(procs: Procs) -> None:
    rig = Rig(procs, canary=False)
    backends = Counter(b for _, b in new_sessions(rig, 60))
    assert backends["c1"] == 20, backends
    assert rig.canary(0)[0] == 400  # no canary group to roll back
