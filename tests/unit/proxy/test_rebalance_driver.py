"""The rebalance driver around the ledger and the planner (no sockets: tunnels are stand-ins
with the Tunnel's three members the driver uses)."""

from __future__ import annotations

from typing import Any

from limpet.admin.metrics import ProxyMetrics
from limpet.pool.pool import Pool
from limpet.pool.rebalance import RebalanceRules
from limpet.proxy.rebalance import TO_CLIENT, Sessions


class StandInTunnel:
    def __init__(self) -> None:
        self.ended = False
        self.last_activity = 0.0
        self.closed_with: tuple[bytes, bytes] | None = None

    def close(self, to_client: bytes = b"", to_backend: bytes = b"") -> None:
        self.ended = True
        self.closed_with = (to_client, to_backend)


def sessions(enabled: bool = True) -> Sessions:
    pool = Pool("p", [("a", "h:1"), ("b", "h:2")])
    rules = RebalanceRules(enabled=enabled, hold=0.0, rate=100.0, max_moving=1.0)
    s = Sessions("p", pool, rules, ProxyMetrics())
    s.answered.update({"a", "b"})  # both seen up
    return s


def test_the_close_frame_says_1012_service_restart() -> None:
    assert TO_CLIENT == b"\x88\x02\x03\xf4"  # FIN+close, 2 bytes, 1012 (RFC 6455 §7.4.1, IANA)


def test_a_move_closes_the_tunnel_with_1012_and_marks_polling_keys_moving() -> None:
    s = sessions()
    tunnels: dict[str, Any] = {}
    for i in range(8):
        tunnels[f"ws{i}"] = StandInTunnel()
        s.tunnel(f"ws{i}", "a", tunnels[f"ws{i}"])
    s.ledger.touch("a", "poll", 0.0)
    plan = s.tick(1.0)
    assert len(plan.moves) == 4  # 9 on a, 0 on b: a keeps ceil(4.5) = 5
    closed = [k for k, t in tunnels.items() if t.closed_with is not None]
    for key in closed:
        to_client, to_backend = tunnels[key].closed_with
        assert to_client == TO_CLIENT and to_backend[:2] == b"\x88\x82"  # masked, 2 bytes
    assert {m.key for m in plan.moves} <= set(s.moving)
    assert s.ledger.count("a") == 5
    assert s.status()["moves"] == {"spread": 4}


def test_twin_rebalance_off_closes_nothing() -> None:
    s = sessions(enabled=False)
    tunnel = StandInTunnel()
    for i in range(8):
        s.tunnel(f"ws{i}", "a", tunnel if i == 0 else StandInTunnel())
    plan = s.tick(1.0)
    assert plan.moves == () and plan.blocked == "disabled" and tunnel.closed_with is None


def test_ended_tunnels_release_their_keys_and_a_reload_keeps_the_accounting() -> None:
    s = sessions()
    tunnel = StandInTunnel()
    s.tunnel("ws", "a", tunnel)
    tunnel.ended = True
    s.sweep(2.0)
    assert "ws" not in s.tunnels and s.ledger.count("a") == 1  # ages from now on
    s.ledger.expire(2.0 + s.ledger.window)
    assert s.ledger.count("a") == 0
    live = StandInTunnel()
    s.tunnel("ws2", "b", live)
    s.mark_moving("gone", 1.0)
    fresh = sessions()
    fresh.adopt(s)
    assert fresh.ledger.count("b") == 1 and fresh.tunnels["ws2"] is live
    assert "gone" in fresh.moving
