"""Per-client limits, namespaces, the policy's sans-IO decisions and the hub config reader."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.errors import ChannelError, ConfigError
from limpet.hub.access import AuthError
from limpet.hub.channels import HistoryPolicy
from limpet.hub.config import build_namespaces, parse_hub_config
from limpet.hub.limits import ClientLimits, TokenBucket
from limpet.hub.namespaces import Namespace, Namespaces
from limpet.hub.policy import ClientState, Policy, forwarded


@given(st.floats(0.5, 100), st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_a_bucket_never_gives_more_than_burst_plus_rate(rate: float, steps: list[float]) -> None:
    bucket = TokenBucket(rate, 2 * rate, 0.0)
    now, taken = 0.0, 0
    for dt in steps:
        now += dt
        taken += bucket.take(now)
    assert taken <= max(1.0, 2 * rate) + rate * now + 1e-6


def test_a_bucket_refills() -> None:
    bucket = TokenBucket(1, 1, 0.0)
    assert bucket.take(0) and not bucket.take(0.5) and bucket.take(1.0)
    assert TokenBucket(0, 0, 0).take(0)  # 0: no limit


def clock(times: list[float]) -> object:
    return lambda: times[0]


def policy(*spaces: Namespace, limits: ClientLimits | None = None) -> Policy:
    now = [0.0]
    default = Namespace("", limits=limits or ClientLimits())
    p = Policy(Namespaces(default, spaces), clock=lambda: now[0])
    return p


def test_the_channel_limit_counts_per_namespace() -> None:
    p = policy(Namespace("room:", limits=ClientLimits(channels_per_client=1)),
               limits=ClientLimits(channels_per_client=2))  # fmt: skip
    state = ClientState("s", "s", True)
    assert p.admit_subscribe(state, "room:1", []).prefix == "room:"
    with pytest.raises(ChannelError, match="channel limit reached: 1 channels per client"):
        p.admit_subscribe(state, "room:2", ["room:1"])
    p.admit_subscribe(state, "room:1", ["room:1"])  # a re-subscribe is not one more
    p.admit_subscribe(state, "a", ["room:1", "b"])  # other namespaces have their own count
    with pytest.raises(ChannelError, match="2 channels"):
        p.admit_subscribe(state, "c", ["room:1", "a", "b"])


def test_subscribes_and_publishes_per_second_are_limited() -> None:
    p = policy(limits=ClientLimits(subscribes_per_second=1, publishes_per_second=2))
    state = ClientState("s", "s", True)
    for _ in range(2):
        p.admit_subscribe(state, "a", [])
    with pytest.raises(ChannelError, match="too many subscribes"):
        p.admit_subscribe(state, "a", [])
    for _ in range(4):
        p.admit_publish(state, "a")
    with pytest.raises(ChannelError, match="too many publishes"):
        p.admit_publish(state, "a")


def test_namespace_rules_refuse() -> None:
    p = policy(Namespace("news:", publish=False, anonymous_read=False))
    anonymous, known = ClientState("s", "s", True), ClientState("t", "ann", False)
    with pytest.raises(AuthError, match="may not publish"):
        p.admit_publish(known, "news:1")
    with pytest.raises(AuthError, match="anonymous reads are off"):
        p.admit_subscribe(anonymous, "news:1", [])
    p.admit_subscribe(known, "news:1", [])
    p.admit_publish(anonymous, "chat")


def test_the_longest_prefix_wins() -> None:
    spaces = Namespaces(Namespace(), (Namespace("a"), Namespace("ab")))
    assert [spaces.for_channel(c).prefix for c in ("abc", "ax", "b")] == ["ab", "a", ""]


def test_forwarded_headers_and_cookies() -> None:
    environ = {"HTTP_COOKIE": "sid=abc; theme=dark", "HTTP_X_OTHER": "no", "HTTP_ORIGIN": "o"}
    got = forwarded(environ, ("cookie", "origin"))
    assert got == {
        "headers": {"cookie": "sid=abc; theme=dark", "origin": "o"},
        "cookies": {"sid": "abc", "theme": "dark"},
    }
    assert forwarded({"HTTP_COOKIE": "x" * 20000}, ("cookie",))["headers"] == {}


CONFIG = """\
hooks:
  url: http://127.0.0.1:9/hooks
  fail-open: true
limits:
  channels-per-client: 10
namespaces:
  "room:":
    history-size: 5
    history-ttl: 2
    publish: false
    channels-per-client: 3
    hooks: {publish: false}
  "news:":
    hooks: {url: http://127.0.0.1:8/other, fail-open: false}
"""


def test_a_config_builds_namespaces_that_inherit() -> None:
    cfg = parse_hub_config(CONFIG, "hub.yaml")
    spaces = build_namespaces(cfg, HistoryPolicy(100, 60), cfg.limits, cfg.hooks.url, True)
    room, news, other = (spaces.for_channel(c) for c in ("room:1", "news:1", "x"))
    assert room.history == HistoryPolicy(5, 2) and not room.publish
    assert room.limits.channels_per_client == 3 and room.limits.publishes_per_second == 1000
    assert room.hooks.url == "http://127.0.0.1:9/hooks" and not room.hooks.publish
    assert news.hooks.url == "http://127.0.0.1:8/other" and not news.hooks.fail_open
    assert news.history == HistoryPolicy(100, 60) and news.limits.channels_per_client == 10
    assert other.prefix == "" and other.hooks.fail_open
    rules = spaces.history_rules()
    assert rules.for_channel("room:x") == HistoryPolicy(5, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hooks: {urll: x}\n", "hub.yaml:1: hooks.urll: unknown key 'urll'"),
        ("limits:\n  channels-per-client: -1\n", "hub.yaml:2: limits.channels-per-client: must not be negative"),
        ("namespaces:\n  'a:':\n    publish: maybe\n", "hub.yaml:3: namespaces.a:.publish: expected bool"),
        ("namespaces:\n  'a:':\n    history-ttl: 0\n", "namespaces.a:.history-ttl: must be > 0"),
        ("namespaces:\n  'a:':\n    hooks: {url: }\n", "hub.yaml:3: namespaces.a:.hooks.url"),
        ("namespaces: [1]\n", "hub.yaml:1: namespaces: expected a mapping"),
        ("foo: 1\n", "hub.yaml:1: foo: unknown key 'foo'"),
        ("hooks: [\n", "hub.yaml:2: not valid YAML"),
    ],
)  # fmt: skip
def test_config_errors_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_hub_config(text, "hub.yaml")
    assert message in str(info.value)


def test_every_error_of_a_file_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        parse_hub_config("foo: 1\nlimits: {bar: 2}\n", "hub.yaml")
    assert "hub.yaml:1: foo" in str(info.value) and "hub.yaml:2: limits.bar" in str(info.value)
