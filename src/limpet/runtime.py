"""Process-level helpers shared by the servers: event loop choice, address parsing, signals."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from limpet.errors import UsageError


def parse_hostport(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:8080`` for IPv6) into a pair; raise UsageError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise UsageError(f"expected HOST:PORT, got {text!r}")
        host, port = text, str(default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        host = "0.0.0.0"
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"expected HOST:PORT with a numeric port, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"port out of range in {text!r}")
    return host, number


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when available (the proxy's hot path is tuned for it), else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_until_signal(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run ``main(stop)`` on a fresh loop; SIGINT/SIGTERM set ``stop`` for a graceful shutdown."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover
            pass
    try:
        loop.run_until_complete(main(stop))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def serve_aiohttp(
    app: Any,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    banner: str,
    make_runner: Callable[..., Any] | None = None,
) -> None:
    """Serve an aiohttp ``app`` until ``stop`` is set, then shut down and unwind every task.
    ``make_runner``: an ``aiohttp.web.AppRunner`` (sub)class or factory, called as AppRunner is.

    Start-up may hang (an app connecting to its broker): a signal during it still stops us.
    """
    import contextlib

    from aiohttp import web

    runner = (make_runner or web.AppRunner)(app, access_log=None, shutdown_timeout=1.0)
    setup = asyncio.ensure_future(runner.setup())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({setup, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not setup.done():
        setup.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await setup
        await runner.cleanup()
        return
    stopped.cancel()
    setup.result()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        try:
            await site.start()
        except OSError as exc:  # a port in use: one line, as `limpet proxy` says it
            from limpet.errors import LimpetError

            raise LimpetError(f"cannot listen: {exc.strerror or exc}") from None
        print(banner, flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        # engine.io's service tasks end only when cancelled; let them unwind before the loop closes
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
