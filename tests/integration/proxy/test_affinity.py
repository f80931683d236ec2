"""Affinity through a real proxy in front of real whoami backends; every feature has its twin."""

from __future__ import annotations

from collections import Counter

from tests.integration.proxy.conftest import Client, start_proxy
from tests.support.procs import Procs

REQUESTS = 30


def backends_seen(client: Client, n: int = REQUESTS, **kw: object) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        seen[client.backend(**kw)] += 1  # type: ignore[arg-type]
    client.close()
    return seen


def test_cookie_jar_stays_on_one_backend(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three)
    for _ in range(3):
        client = Client(proxy.url)
        seen = backends_seen(client)
        assert len(seen) == 1, seen
        assert "limpet" in client.cookies


def test_twin_without_affinity_the_same_jar_spreads(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--affinity", "none")
    client = Client(proxy.url)
    seen = backends_seen(client)
    assert len(seen) == 3, seen
    assert not client.cookies


def test_fresh_clients_spread_over_every_backend(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three)
    first = Counter(Client(proxy.url).backend() for _ in range(30))
    assert set(first) == set(three), first


def test_tampered_cookie_is_repinned_not_trusted(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three)
    client = Client(proxy.url)
    client.backend()
    token = client.cookies["limpet"]
    for i in range(len(token)):  # flip one character at a time: every forgery is refused
        forged = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        other = Client(proxy.url)
        other.cookies["limpet"] = forged
        status, _, resp = other.get()
        other.close()
        assert status == 200
        assert resp.headers.get("Set-Cookie", "").startswith("limpet="), "forged token kept"
        if i > 6:
            break
    junk = Client(proxy.url)
    junk.cookies["limpet"] = "not-a-token%%%"
    status, _, resp = junk.get()
    assert status == 200 and resp.headers.get("Set-Cookie")


def test_two_proxies_with_the_same_secret_agree(procs: Procs, three: dict[str, str]) -> None:
    one = start_proxy(procs, three, admin=False)
    two = start_proxy(procs, three, admin=False)
    for _ in range(5):
        client = Client(one.url)
        pinned = client.backend()
        client.close()
        moved = Client(two.url)
        moved.cookies = dict(client.cookies)
        assert backends_seen(moved, 10) == Counter({pinned: 10})


def test_twin_two_proxies_with_different_secrets_disagree(
    procs: Procs, three: dict[str, str]
) -> None:
    one = start_proxy(procs, three, admin=False)
    two = start_proxy(procs, three, admin=False, secret="another-secret")
    client = Client(one.url)
    client.backend()
    moved = Client(two.url)
    moved.cookies = dict(client.cookies)
    _, _, resp = moved.get()
    assert resp.headers.get("Set-Cookie"), "a token from another secret must not be honoured"


SOURCES = [f"127.0.0.{i}" for i in range(2, 12)]


def test_client_ip_sticks_per_source_address(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--affinity", "client-ip")
    chosen = {}
    for source in SOURCES:
        seen = backends_seen(Client(proxy.url, source=source, jar=False), 8)
        assert len(seen) == 1, (source, seen)
        chosen[source] = next(iter(seen))
    assert len(set(chosen.values())) > 1, chosen


def test_twin_client_ip_without_affinity_spreads(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--affinity", "none")
    spread = [len(backends_seen(Client(proxy.url, source=s, jar=False), 8)) for s in SOURCES[:3]]
    assert max(spread) > 1, spread


def test_hash_on_header(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--affinity", "hash:header:X-User")
    chosen = {}
    for user in [f"user-{i}" for i in range(12)]:
        seen = backends_seen(Client(proxy.url, jar=False), 6, headers={"X-User": user})
        assert len(seen) == 1, (user, seen)
        chosen[user] = next(iter(seen))
    assert len(set(chosen.values())) > 1, chosen
    # the same key on a second proxy replica lands on the same backend (no shared state)
    other = start_proxy(procs, three, "--affinity", "hash:header:X-User", admin=False)
    for user, backend in chosen.items():
        assert Client(other.url, jar=False).backend(headers={"X-User": user}) == backend


def test_twin_hash_without_affinity_spreads(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--affinity", "none")
    seen = backends_seen(Client(proxy.url, jar=False), 9, headers={"X-User": "user-1"})
    assert len(seen) > 1


def test_workers_share_the_port_and_agree(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--workers", "2", admin=False)
    for _ in range(4):
        client = Client(proxy.url)
        pinned = client.backend()
        client.close()
        # a new connection per request: the kernel spreads them over both workers
        for _ in range(10):
            again = Client(proxy.url)
            again.cookies = dict(client.cookies)
            assert again.backend() == pinned
            again.close()
