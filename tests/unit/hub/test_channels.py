"""The hub's sans-IO core: names, offsets/epochs, bounded history, idempotency, recovery, seam."""

from __future__ import annotations

import sys

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.errors import ChannelError, ConfigError
from limpet.hub.channels import (
    ChannelLog,
    HistoryPage,
    HistoryPolicy,
    HistoryRules,
    IdempotencyWindow,
    Message,
    Position,
    PresenceEvent,
    Recovery,
    SeamState,
    Subscription,
    decode_envelope,
    encode_envelope,
    plan_recovery,
    validate_channel,
)
from limpet.hub.channels.history import trim_expired

# --- names -----------------------------------------------------------------------------------

GOOD = ["chat", "chat.room-1", "user:42", "a", "x_y", "team@acme", "k=v", "A" * 128, "0"]
BAD = [
    "",
    " ",
    "a b",
    "chat/1",
    "a*",
    "a>",
    ".chat",
    "-x",
    "chat..x",
    "chat.",
    "é",
    "A" * 129,
    None,
    3,
]


@pytest.mark.parametrize("name", GOOD)
def test_valid_channel_names(name: str) -> None:
    assert validate_channel(name) == name


@pytest.mark.parametrize("name", BAD)
def test_invalid_channel_names(name: object) -> None:
    with pytest.raises(ChannelError):
        validate_channel(name)


# --- records ---------------------------------------------------------------------------------


def test_records_round_trip_and_reject_unknown() -> None:
    m = Message("c", "e1", 3, {"text": "hi", "n": [1, 2]}, 1000)
    p = PresenceEvent("c", "join", "alice", {"replica": "h1"})
    assert decode_envelope(encode_envelope(m)) == m
    assert decode_envelope(encode_envelope(p)) == p
    with pytest.raises(msgspec.ValidationError):
        decode_envelope(b'{"kind":"other","channel":"c"}')
    with pytest.raises(msgspec.ValidationError):
        decode_envelope(b'{"kind":"message","channel":"c","epoch":"e","offset":1,"data":1,"v":2}')
    assert m.wire() == {
        "channel": "c",
        "epoch": "e1",
        "offset": 3,
        "data": {"text": "hi", "n": [1, 2]},
    }


# --- history and offsets ---------------------------------------------------------------------


def test_offsets_start_at_one_and_increase_by_one() -> None:
    log = ChannelLog("c", "e", HistoryPolicy(size=3, ttl=10))
    offsets = [log.append(i, now_ms=0)[0].offset for i in range(5)]
    assert offsets == [1, 2, 3, 4, 5]
    page = log.page(0, 100, now_ms=0)
    assert [m.offset for m in page.messages] == [3, 4, 5]  # size bound
    assert page.position == Position("e", 5)


def test_history_ttl_drops_old_messages() -> None:
    log = ChannelLog("c", "e", HistoryPolicy(size=100, ttl=1))
    log.append("old", now_ms=0)
    log.append("new", now_ms=900)
    assert [m.data for m in log.page(0, 10, now_ms=1500).messages] == ["new"]
    assert trim_expired(list(log.page(0, 10, now_ms=0).messages), now_ms=5000, ttl=1) == []


def test_history_page_limit_and_position_only() -> None:
    log = ChannelLog("c", "e", HistoryPolicy())
    for i in range(10):
        log.append(i, now_ms=0)
    assert [m.offset for m in log.page(2, 3, now_ms=0).messages] == [3, 4, 5]
    assert log.page(None, 10, now_ms=0) == HistoryPage("e", 10)


def test_history_rules_longest_prefix_wins() -> None:
    rules = HistoryRules.parse(HistoryPolicy(100, 60), ["chat.=10:5", "chat.vip.=1000"])
    assert rules.for_channel("news") == HistoryPolicy(100, 60)
    assert rules.for_channel("chat.x") == HistoryPolicy(10, 5)
    assert rules.for_channel("chat.vip.x") == HistoryPolicy(1000, 60)
    for bad in ["nope", "=3", "chat.=x", "chat.=-1"]:
        with pytest.raises(ConfigError):
            HistoryRules.parse(HistoryPolicy(), [bad])


def test_idempotent_publish_within_window() -> None:
    log = ChannelLog("c", "e", HistoryPolicy(), idempotency_ttl=1)
    first, dup = log.append("a", now_ms=0, idempotency_key="k")
    assert not dup
    again, dup = log.append("a", now_ms=500, idempotency_key="k")
    assert dup and again.offset == first.offset
    assert log.offset == 1
    later, dup = log.append("a", now_ms=2000, idempotency_key="k")
    assert not dup and later.offset == 2  # the window has passed


def test_idempotency_window_is_bounded() -> None:
    window = IdempotencyWindow(ttl=100, max_keys=3)
    for i in range(10):
        window.put(str(i), Position("e", i), now_ms=0)
    assert len(window) == 3
    assert window.get("0", now_ms=0) is None
    assert window.get("9", now_ms=0) == Position("e", 9)


# --- recovery decision -----------------------------------------------------------------------


def msgs(epoch: str, offsets: range) -> tuple[Message, ...]:
    return tuple(Message("c", epoch, o, o) for o in offsets)


CASES = [
    # since, page, recovered, delivered offsets
    (None, HistoryPage("e", 5), False, []),
    (Position("e", 5), HistoryPage("e", 5), True, []),
    (Position("e", 2), HistoryPage("e", 5, msgs("e", range(3, 6))), True, [3, 4, 5]),
    (Position("e", 0), HistoryPage("e", 3, msgs("e", range(1, 4))), True, [1, 2, 3]),
    (Position("e", 1), HistoryPage("e", 5, msgs("e", range(3, 6))), False, []),  # beyond window
    (Position("e", 2), HistoryPage("e", 5, msgs("e", range(3, 5))), False, []),  # page cut short
    (Position("old", 2), HistoryPage("e", 5, msgs("e", range(1, 6))), False, []),  # new epoch
    (Position("e", 9), HistoryPage("e", 5, msgs("e", range(1, 6))), False, []),  # ahead of top
]


@pytest.mark.parametrize(("since", "page", "recovered", "offsets"), CASES)
def test_plan_recovery_table(
    since: Position | None, page: HistoryPage, recovered: bool, offsets: list[int]
) -> None:
    plan = plan_recovery(since, page)
    assert plan.recovered is recovered
    assert [m.offset for m in plan.messages] == offsets
    assert plan.position == page.position


# --- the seam, table ---------------------------------------------------------------------------


def test_seam_buffers_live_during_recovery_then_delivers_without_duplicates() -> None:
    sub = Subscription("c", Position("e", 2))
    assert sub.on_live(Message("c", "e", 5, 5)).deliver == ()  # buffered
    assert sub.on_live(Message("c", "e", 6, 6)).deliver == ()
    step = sub.on_history(HistoryPage("e", 5, msgs("e", range(1, 6))))
    assert step.recovery is not None and step.recovery.recovered
    assert [m.offset for m in step.deliver] == [3, 4, 5, 6]
    assert sub.state is SeamState.LIVE
    assert sub.on_live(Message("c", "e", 6, 6)).deliver == ()  # duplicate dropped
    assert [m.offset for m in sub.on_live(Message("c", "e", 7, 7)).deliver] == [7]


def test_seam_gap_in_live_fetches_history() -> None:
    sub = Subscription("c")
    sub.on_history(HistoryPage("e", 3))
    step = sub.on_live(Message("c", "e", 6, 6))
    assert step.deliver == () and step.fetch_since == 3 and sub.state is SeamState.RECOVERING
    step = sub.on_history(HistoryPage("e", 6, msgs("e", range(4, 7))))
    assert [m.offset for m in step.deliver] == [4, 5, 6] and sub.state is SeamState.LIVE


def test_seam_epoch_change_reports_not_recovered_and_delivers_the_new_epoch_from_1() -> None:
    sub = Subscription("c")
    sub.on_history(HistoryPage("e", 3))
    step = sub.on_live(Message("c", "e2", 4, "x"))
    assert step.fetch_since == 3
    # the page read after the restart holds 4 of the new epoch (read with since=3: only 4)
    step = sub.on_history(HistoryPage("e2", 4, msgs("e2", range(4, 5))))
    assert step.recovery == Recovery(Position("e2", 0), False)  # the old history is gone
    assert step.deliver == () and step.fetch_since == 0  # read the new epoch from its start
    step = sub.on_history(HistoryPage("e2", 4, msgs("e2", range(1, 5))))
    assert [m.offset for m in step.deliver] == [1, 2, 3, 4]
    assert step.recovery is not None and step.recovery.recovered
    assert sub.state is SeamState.LIVE
    assert [m.offset for m in sub.on_live(Message("c", "e2", 5, 5)).deliver] == [5]


def test_seam_epoch_change_on_an_empty_new_epoch_goes_live_at_0() -> None:
    sub = Subscription("c", Position("old", 7))
    step = sub.on_history(HistoryPage("e2", 0))
    assert step.recovery == Recovery(Position("e2", 0), False) and step.fetch_since is None
    assert sub.state is SeamState.LIVE
    assert [m.offset for m in sub.on_live(Message("c", "e2", 1, 1)).deliver] == [1]


def test_seam_epoch_change_twin_new_epoch_trimmed_is_reported_again() -> None:
    """Twin: when the new epoch's start is gone too, a second notice says so (no silent gap)."""
    sub = Subscription("c", Position("old", 7))
    assert sub.on_history(HistoryPage("e2", 9, msgs("e2", range(8, 10)))).fetch_since == 0
    step = sub.on_history(HistoryPage("e2", 9, msgs("e2", range(5, 10))))
    assert step.recovery == Recovery(Position("e2", 9), False) and step.deliver == ()


def test_seam_buffer_is_bounded_and_what_it_drops_comes_from_history() -> None:
    sub = Subscription("c", Position("e", 0), max_buffer=3)
    for offset in range(1, 11):
        sub.on_live(Message("c", "e", offset, offset))
        assert len(sub.buffer) <= 3
    step = sub.on_history(HistoryPage("e", 4, msgs("e", range(1, 5))))
    assert [m.offset for m in step.deliver] == [1, 2, 3, 4]
    assert step.fetch_since == 4  # 5..9 were dropped: read them back
    step = sub.on_history(HistoryPage("e", 10, msgs("e", range(5, 11))))
    assert [m.offset for m in step.deliver] == [5, 6, 7, 8, 9, 10]
    assert sub.state is SeamState.LIVE


def test_seam_resync_after_broker_reconnect() -> None:
    sub = Subscription("c")
    sub.on_history(HistoryPage("e", 0))
    assert sub.resync().fetch_since == 0
    step = sub.on_history(HistoryPage("e", 2, msgs("e", range(1, 3))))
    assert [m.offset for m in step.deliver] == [1, 2]


def test_resync_during_a_subscribe_leaves_history_to_the_subscribe() -> None:
    """A broker reconnect while a subscribe is still reading history starts no fetch of its
    own: one would deliver offset 42 before the subscribe's ack (or for a subscribe about to
    fail, whose retry would then deliver 42 again). The subscribe's page recovers it."""
    sub = Subscription("c", Position("e", 41))
    sub.on_live(Message("c", "e", 42, 42))  # buffered: the page is not there yet
    step = sub.resync()
    assert step.fetch_since is None and step.deliver == ()
    step = sub.on_history(HistoryPage("e", 42, msgs("e", range(42, 43))))
    assert step.recovery is not None and step.recovery.recovered
    assert [m.offset for m in step.deliver] == [42]
    assert sub.resync().fetch_since == 42  # once subscribed, a reconnect re-reads from there


def test_seam_without_the_buffer_would_lose_messages() -> None:
    """Twin: had live messages during the fetch been dropped, the client would miss offset 6."""
    sub = Subscription("c", Position("e", 2))
    sub.on_live(Message("c", "e", 6, 6))
    step = sub.on_history(HistoryPage("e", 5, msgs("e", range(1, 6))))
    assert 6 in [m.offset for m in step.deliver]
    sub2 = Subscription("c", Position("e", 2))
    step2 = sub2.on_history(HistoryPage("e", 5, msgs("e", range(1, 6))))
    assert 6 not in [m.offset for m in step2.deliver]


# --- the seam, properties ----------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, int, int, list[bool], int]:
    total = draw(st.integers(0, 40))
    subscribed_at = draw(st.integers(0, total))  # messages published before the live subscribe
    fetched_at = draw(st.integers(subscribed_at, total))  # history read at this point
    since = draw(st.integers(0, subscribed_at))
    lost = draw(st.lists(st.booleans(), min_size=total, max_size=total))  # live messages lost
    window = draw(st.integers(0, 50))
    return total, subscribed_at, fetched_at, since, lost, window


def page_at(top: int, since: int, window: int) -> HistoryPage:
    first = max(1, top - window + 1)
    return HistoryPage("e", top, msgs("e", range(max(first, since + 1), top + 1)))


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_seam_delivers_every_message_once_in_order(
    scenario: tuple[int, int, int, int, list[bool], int],
) -> None:
    total, subscribed_at, fetched_at, since, lost, window = scenario
    sub = Subscription("c", Position("e", since))
    delivered: list[int] = []
    pending: list[int] = []  # history fetches requested (answered at the current top)
    recovered: bool | None = None
    step = None
    for offset in range(subscribed_at + 1, total + 1):
        if offset == fetched_at + 1 and recovered is None:
            step = sub.on_history(page_at(fetched_at, sub.fetch_since, window))
            recovered = step.recovery.recovered if step.recovery else None
            delivered += [m.offset for m in step.deliver]
            if step.fetch_since is not None:
                pending.append(step.fetch_since)
        if lost[offset - 1]:
            continue
        step = sub.on_live(Message("c", "e", offset, offset))
        delivered += [m.offset for m in step.deliver]
        if step.fetch_since is not None:
            pending.append(step.fetch_since)
    if recovered is None:
        step = sub.on_history(page_at(fetched_at, sub.fetch_since, window))
        recovered = step.recovery.recovered if step.recovery else None
        delivered += [m.offset for m in step.deliver]
    # a lost tail is only noticed by a re-sync (what a broker reconnect triggers); answer it
    # and any outstanding gap fill from the final history with a big enough window
    sub.resync()
    step = sub.on_history(page_at(total, sub.fetch_since, total))
    delivered += [m.offset for m in step.deliver]
    assert sub.state is SeamState.LIVE
    assert delivered == sorted(set(delivered)), "in order, no duplicate"
    if recovered:
        assert delivered == list(range(since + 1, total + 1))
    else:
        assert delivered == list(range(fetched_at + 1, total + 1))
    assert recovered == (fetched_at - since <= window)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 100), st.sampled_from(["a", "b", "c", None])), max_size=60)
)
def test_offsets_are_contiguous_and_idempotency_holds(ops: list[tuple[int, str | None]]) -> None:
    log = ChannelLog("c", "e", HistoryPolicy(size=1000, ttl=1000), idempotency_ttl=10)
    now = 0
    first_offset: dict[str, tuple[int, int]] = {}
    for step, key in ops:
        now += step
        message, duplicate = log.append(now, now_ms=now, idempotency_key=key)
        if key is not None and key in first_offset and now - first_offset[key][1] < 10_000:
            assert duplicate and message.offset == first_offset[key][0]
        else:
            assert not duplicate and message.offset == log.offset
            if key is not None:
                first_offset[key] = (message.offset, now)
    stored = [m.offset for m in log.page(0, 10_000, now_ms=now).messages]
    assert stored == list(range(1, log.offset + 1))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 5),
    st.lists(st.tuples(st.sampled_from(["e", "f"]), st.integers(0, 12)), max_size=30),
)
def test_advance_is_the_fast_path_of_on_live(start: int, live: list[tuple[str, int]]) -> None:
    """The hub's fan-out calls ``advance`` first and ``on_live`` only when it says no: that must
    deliver exactly what ``on_live`` alone delivers, and leave the same state."""
    fast, slow = Subscription("c"), Subscription("c")
    for sub in (fast, slow):
        sub.on_history(HistoryPage("e", start))
    fast_out: list[tuple[str, int]] = []
    slow_out: list[tuple[str, int]] = []
    for epoch, offset in live:
        message = Message("c", epoch, offset, None)
        if fast.advance(message):
            fast_out.append((epoch, offset))
        else:
            fast_out += [(m.epoch, m.offset) for m in fast.on_live(message).deliver]
        slow_out += [(m.epoch, m.offset) for m in slow.on_live(message).deliver]
    assert fast_out == slow_out
    assert (fast.state, fast.position, fast.buffer) == (slow.state, slow.position, slow.buffer)


def test_advance_refuses_while_recovering_and_on_a_gap() -> None:
    sub = Subscription("c", Position("e", 0))
    assert not sub.advance(Message("c", "e", 1, 1))  # still recovering: the seam decides
    sub.on_history(HistoryPage("e", 1, msgs("e", range(1, 2))))
    assert sub.advance(Message("c", "e", 2, 2))
    assert sub.position == Position("e", 2)
    assert not sub.advance(Message("c", "e", 4, 4))  # a gap: on_live goes back to history
    assert not sub.advance(Message("c", "f", 3, 3))  # a new epoch
    assert sub.position == Position("e", 2)


# --- unreadable stored data ----------------------------------------------------------------------


def test_undecodable_data_keeps_its_position() -> None:
    """Data past the hub's limits is UNREADABLE by rule, before a parser sees it: 33 deep (which
    every parser reads) and 5 000 deep (which Python 3.13's parsers read and 3.11's and 3.12's
    refuse with RecursionError) alike, on every version."""
    from limpet.hub.channels.records import UNREADABLE, decode_data, decode_message_head

    assert decode_data(b'{"a": [1]}') == {"a": [1]}
    assert decode_data(b"[" * 32 + b"]" * 32, max_depth=32) == msgspec.json.decode(
        b"[" * 32 + b"]" * 32
    )
    assert decode_data(b"[" * 33 + b"]" * 33, max_depth=32) is UNREADABLE
    assert decode_data(b"[" * 5000 + b"]" * 5000) is UNREADABLE
    assert decode_data(b"[" * 5000 + b"]" * 5000, max_depth=256) is UNREADABLE
    assert decode_data(b"{nope") is UNREADABLE
    assert decode_data(b'"' + b"x" * 100 + b'"', max_bytes=100) is UNREADABLE
    raw = encode_envelope(Message("chat.a", "ep", 42, None, 5))
    for depth in (33, 5000):
        poisoned = raw.replace(b'"data":null', b'"data":' + b"[" * depth + b"]" * depth)
        with pytest.raises(msgspec.DecodeError, match="nested deeper than 32 levels"):
            decode_envelope(poisoned, max_depth=32)
        head = decode_message_head(poisoned)
        assert head is not None and (head.channel, head.epoch, head.offset) == ("chat.a", "ep", 42)
        assert head.data is UNREADABLE
    within = raw.replace(b'"data":null', b'"data":' + b"[" * 32 + b"]" * 32)
    assert isinstance(decode_envelope(within, max_depth=32), Message)
    with pytest.raises(msgspec.DecodeError, match="larger than"):
        decode_envelope(raw.replace(b"null", b'"' + b"x" * 5000 + b'"'), max_bytes=10)
    assert decode_message_head(encode_envelope(PresenceEvent("c", "join", "x"))) is None


def test_without_the_rule_the_parser_decides_and_it_depends_on_the_python() -> None:
    """The twin: msgspec alone decodes 5 000 levels on 3.13 and raises RecursionError on 3.11
    and 3.12, which is why the hub decides depth itself (payload.decoded_within)."""
    deep = b"[" * 5000 + b"]" * 5000
    if sys.version_info >= (3, 13):
        assert msgspec.json.decode(deep)
    else:
        with pytest.raises(RecursionError):
            msgspec.json.decode(deep)
