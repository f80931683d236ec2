"""The HTTP edge of the hooks: POST a signed JSON body to ``URL/<hook>``, bounded.

Bounds: at most ``concurrency`` calls in flight and ``queue`` more waiting (past that a call is
an outage at once, so a slow application cannot make the hub hold unbounded work), a ``timeout``
per call, and a breaker (``limpet.hub.hooks.breaker``) that stops calling an application that
keeps failing. What the answer means is decided by ``limpet.hub.hooks.answers``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from limpet.hub.hooks.answers import MAX_ANSWER, Answer, Outage, parse_answer
from limpet.hub.hooks.breaker import Breaker, BreakerState
from limpet.hub.hooks.signing import signed_headers

log = logging.getLogger("limpet.hub.hooks")


@dataclass(frozen=True)
class CallerOptions:
    timeout: float = 2.0
    concurrency: int = 64
    queue: int = 1024
    breaker_threshold: int = 5
    breaker_cooldown: float = 5.0


class HookCaller:
    """Calls of one application base URL (one per distinct hook URL, shared by namespaces)."""

    def __init__(self, url: str, secret: bytes | None, options: CallerOptions) -> None:
        self.url = url.rstrip("/")
        self.secret = secret
        self.options = options
        self.breaker = Breaker(options.breaker_threshold, options.breaker_cooldown)
        self._slots = asyncio.Semaphore(options.concurrency)
        self._waiting = 0
        self._session: aiohttp.ClientSession | None = None
        #: answers by kind, for /healthz and the benchmark
        self.counts: dict[str, int] = {"allow": 0, "deny": 0, "outage": 0}

    def __repr__(self) -> str:
        return f"HookCaller(url={self.url!r}, breaker={self.breaker!r})"

    async def call(self, hook: str, payload: dict[str, Any]) -> Answer:
        answer = await self._call(hook, payload)
        kind = type(answer).__name__.lower()
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return answer

    async def _call(self, hook: str, payload: dict[str, Any]) -> Answer:
        if self._slots.locked() and self._waiting >= self.options.queue:
            return Outage(f"{self._waiting} hook calls already waiting")
        if not self.breaker.allow(time.monotonic()):
            return Outage("breaker open: the application failed repeatedly")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            answer = await self._post(hook, msgspec.json.encode(payload))
        finally:
            self._slots.release()
        before = self.breaker.state
        self.breaker.record(not isinstance(answer, Outage), time.monotonic())
        if self.breaker.state is not before:
            level = logging.WARNING if self.breaker.state is BreakerState.OPEN else logging.INFO
            log.log(level, "hook breaker of %s: %s -> %s", self.url, before.value,
                    self.breaker.state.value)  # fmt: skip
        if isinstance(answer, Outage):
            log.warning("hook %s/%s: outage (%s)", self.url, hook, answer.reason)
        return answer

    async def _post(self, hook: str, body: bytes) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.options.timeout),
                connector=aiohttp.TCPConnector(limit=self.options.concurrency),
            )
        headers = {"Content-Type": "application/json"}
        headers.update(signed_headers(self.secret, body, time.time()))
        try:
            async with self._session.post(f"{self.url}/{hook}", data=body, headers=headers) as resp:
                raw = await resp.content.read(MAX_ANSWER + 1)
                return parse_answer(resp.status, raw)
        except TimeoutError:
            return Outage(f"no answer within {self.options.timeout} s")
        except (aiohttp.ClientError, OSError) as exc:
            return Outage(f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
