"""Recovery: which messages a (re)subscribing client missed, and the seam between history and live.

``plan_recovery`` is the decision: given the client's last position and what the broker retains,
either exactly the missed messages in order (``recovered=True``) or nothing (``recovered=False``,
the client starts again from the channel's current position).

``Subscription`` is the bookkeeping for one client in one channel. Live messages that arrive while
history is being fetched are buffered; after history is delivered, buffered messages with an offset
above the last delivered one follow. A gap in live messages (a broker reconnect, a lost pub/sub
message) sends the subscription back to fetching history from its last position, so a client never
sees a hole, a duplicate or a reordering; when the hole cannot be filled it is told so.

State table (tests iterate over it, docs print it):

    state       event                      -> state       action
    RECOVERING  live message               -> RECOVERING  buffer it
    RECOVERING  history page               -> LIVE        deliver plan, then contiguous buffer
    RECOVERING  history page, buffer gap   -> RECOVERING  deliver what is contiguous, fetch again
    LIVE        live message, next offset  -> LIVE        deliver
    LIVE        live message, seen offset  -> LIVE        drop (duplicate)
    LIVE        live message, gap/epoch    -> RECOVERING  buffer it, fetch history since position
    RECOVERING  live message, buffer full  -> RECOVERING  drop the buffer (history holds it), keep it
    LIVE        broker reconnect (resync)  -> RECOVERING  fetch history since position
    (no page)   broker reconnect (resync)  -> RECOVERING  nothing: the subscribe reads history itself
    any         history page, new epoch    -> RECOVERING  report not recovered at (epoch, 0), fetch
                                                          the new epoch from its first offset

The buffer is bounded (``max_buffer``): what it drops is in history, and the fetch that follows
reads it back (or, when history lost it too, the client is told it was not recovered). After an
epoch change the new history is delivered from offset 1: it is only the old one that was lost.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from limpet.hub.channels.records import HistoryPage, Message, Position


@dataclass(frozen=True)
class Recovery:
    """The recovery decision: where the client is afterwards, whether nothing was lost, and
    the messages to deliver (only when recovered)."""

    position: Position
    recovered: bool
    messages: tuple[Message, ...] = ()


def plan_recovery(since: Position | None, page: HistoryPage) -> Recovery:
    """Decide recovery of a client at ``since`` from a history page fetched with since.offset.

    Recovered only when the epoch is unchanged and the page holds every offset from
    ``since.offset + 1`` to the channel's current offset, contiguously.
    """
    top = page.position
    if since is None or since.epoch != page.epoch or since.offset > page.offset:
        return Recovery(top, False)
    missed = tuple(m for m in page.messages if m.offset > since.offset and m.epoch == page.epoch)
    expected = range(since.offset + 1, page.offset + 1)
    if [m.offset for m in missed] != list(expected):
        return Recovery(top, False)
    return Recovery(top, True, missed)


class SeamState(enum.Enum):
    RECOVERING = "recovering"
    LIVE = "live"


@dataclass(frozen=True)
class Step:
    """What the I/O layer must do after feeding the subscription an event."""

    deliver: tuple[Message, ...] = ()
    #: fetch history with offset > this and feed it to ``on_history`` (None: nothing to fetch)
    fetch_since: int | None = None
    #: the decision of a completed history fetch (the ack of a subscribe, or a later re-sync)
    recovery: Recovery | None = None


@dataclass(slots=True)
class Subscription:
    """One client's subscription to one channel: recovery state and the last delivered position."""

    channel: str
    since: Position | None = None
    state: SeamState = SeamState.RECOVERING
    position: Position | None = None
    buffer: list[Message] = field(default_factory=list)
    #: most live messages buffered while recovering; past it the buffer restarts empty
    max_buffer: int = 1000

    def __repr__(self) -> str:
        return (
            f"Subscription(channel={self.channel!r}, state={self.state.name}, "
            f"position={self.position}, buffered={len(self.buffer)})"
        )

    @property
    def fetch_since(self) -> int:
        """The offset the next history fetch starts after."""
        if self.position is not None:
            return self.position.offset
        return self.since.offset if self.since is not None else 0

    def advance(self, message: Message, position: Position | None = None) -> bool:
        """The fast path of ``on_live``: True if ``message`` is the next one of a live
        subscription (the position moves to it and it is to be delivered); False changes nothing
        and the caller feeds the message to ``on_live``. ``position`` may pass the message's
        position, shared by every subscription of the channel."""
        current = self.position
        if (
            self.state is SeamState.LIVE
            and current is not None
            and message.offset == current.offset + 1
            and message.epoch == current.epoch
        ):
            self.position = position or Position(message.epoch, message.offset)
            return True
        return False

    def on_live(self, message: Message) -> Step:
        """A message from the broker's live stream."""
        if self.state is SeamState.RECOVERING or self.position is None:
            self._buffer(message)
            return Step()
        if message.epoch == self.position.epoch:
            if message.offset <= self.position.offset:
                return Step()  # already delivered (from history or a redelivery)
            if message.offset == self.position.offset + 1:
                self.position = Position(message.epoch, message.offset)
                return Step((message,))
        # a hole or a new epoch: go back to history to fill it (or to learn it is lost)
        self.state = SeamState.RECOVERING
        self._buffer(message)
        return Step(fetch_since=self.fetch_since)

    def _buffer(self, message: Message) -> None:
        if len(self.buffer) >= self.max_buffer:
            # Everything buffered is in history (or lost there too, which the next page tells):
            # drop it rather than grow while a fetch is slow.
            self.buffer.clear()
        self.buffer.append(message)

    def resync(self) -> Step:
        """The live stream may have lost messages (broker reconnect): fetch from our position.

        Not before the first history page: that subscribe is still reading history itself, and
        a fetch of our own would deliver messages before the subscribe's ack (or for a subscribe
        about to fail). A gap after its page shows at the next live message, or at the position
        check.
        """
        if self.position is None:
            return Step()
        self.state = SeamState.RECOVERING
        return Step(fetch_since=self.fetch_since)

    def on_history(self, page: HistoryPage) -> Step:
        """A history page fetched (after subscribing to live) with ``fetch_since``."""
        since = self.position if self.position is not None else self.since
        if since is not None and since.epoch != page.epoch:
            return self._new_epoch(since.epoch, page)
        recovery = plan_recovery(since, page)
        deliver = list(recovery.messages)
        position = recovery.position
        rest: list[Message] = []
        for message in sorted(self.buffer, key=lambda m: m.offset):
            if message.epoch != position.epoch:
                rest.append(message)  # a newer epoch began after the page was read
                continue
            if message.offset <= position.offset:
                continue
            if message.offset == position.offset + 1 and not rest:
                deliver.append(message)
                position = Position(message.epoch, message.offset)
            else:
                rest.append(message)
        self.position = position
        self.buffer = rest
        if rest:
            return Step(tuple(deliver), fetch_since=position.offset, recovery=recovery)
        self.state = SeamState.LIVE
        return Step(tuple(deliver), recovery=recovery)

    def _new_epoch(self, old: str, page: HistoryPage) -> Step:
        """The channel's history was lost and began again: what the client had is gone (it is
        told so, at offset 0 of the new epoch), and the new epoch is delivered from its start."""
        self.buffer = [m for m in self.buffer if m.epoch != old]
        self.position = Position(page.epoch, 0)
        lost = Recovery(self.position, False)
        if page.offset > 0:
            # the page was read after the client's old offset: read the new epoch from 0
            self.state = SeamState.RECOVERING
            return Step(fetch_since=0, recovery=lost)
        step = self.on_history(page)
        return Step(step.deliver, step.fetch_since, recovery=lost)
