"""limpet.client: an asyncio client of the limpet hub that recovers by itself.

    async with limpet.client.Client(url, token=...) as client:
        async with client.subscribe("chat.lobby", position=saved) as sub:
            await sub.publish({"text": "hi"})
            async for item in sub:          # Message, each offset once, in order; or a Gap
                ...

After any disconnect it reconnects and subscribes every channel again with ``since``; what the hub
cannot recover is yielded as a ``Gap`` (never raised, never silent). See docs/clients.md.

The asyncio part is imported on first use, so ``limpet.client.core`` (sans-IO) stays importable
without any I/O module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from limpet.client.core import ChannelState, Gap, GapReason, Message, Position, Presence

if TYPE_CHECKING:
    from limpet.client.aio import Client, ClientError, Published, PublishTimeout, Subscription

_AIO = {"Client", "ClientError", "Published", "PublishTimeout", "Subscription"}

__all__ = [
    "ChannelState",
    "Client",
    "ClientError",
    "Gap",
    "GapReason",
    "Message",
    "Position",
    "Presence",
    "PublishTimeout",
    "Published",
    "Subscription",
]


def __getattr__(name: str) -> Any:
    if name in _AIO:
        from limpet.client import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'limpet.client' has no attribute {name!r}")
