"""I/O: hot reload: re-read ``--config`` (SIGHUP, or ``POST /reload`` on the admin) and apply it
to new requests while open connections, pinned sessions and tunnels carry on.

The new file goes through the same ``resolve`` as at start (file, then flags on top, then
validation). A file that does not validate changes nothing: the error (file, line, key) is
logged, returned to the admin caller and counted in ``limpet_config_reloads_total{result}``.

What a reload swaps, in one step on the event loop (nothing runs in between):
- ``server.config`` (timeouts, limits, forwarding for connections accepted from now on), the
  routes, and the pools: a pool whose config is unchanged keeps its runtime (health state,
  pins, idle upstream connections); a changed or new one gets a fresh runtime and its probes
  (a changed one keeps its session accounting: backends added this way are a scale-up that
  the rebalance evens out, as discovery's are);
  a removed one stops probing and closes its idle upstream connections once nothing is left in
  flight (exchanges already running hold their runtime to the end).
- Not swapped, logged as such: listeners, admin, workers (a restart rebinds them), and pools
  fed by DNS or Kubernetes discovery (their watchers keep running unchanged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from limpet.errors import LimpetError

if TYPE_CHECKING:
    from limpet.config.model import ProxyConfig
    from limpet.proxy.server import ProxyServer

log = logging.getLogger("limpet.reload")

Loader = Callable[[], "ProxyConfig"]


def reload(server: ProxyServer) -> tuple[bool, str]:
    """Re-read the config with the server's loader; (applied?, what happened)."""
    loader = server.config_loader
    if loader is None:
        log.warning("nothing to reload: the proxy was started without --config")
        return False, "nothing to reload: the proxy was started without --config"
    try:
        new = loader()
    except LimpetError as exc:
        server.metrics.config_reloads.labels("error").inc()
        for line in str(exc).splitlines():  # every error of the file, one line each
            log.error("reload refused, the running config stays: %s", line)
        return False, str(exc)
    except Exception as exc:  # a defect, not a bad file: still counted, the old config stays
        server.metrics.config_reloads.labels("error").inc()
        log.exception("reload failed, the running config stays")
        return False, f"reload failed: {exc!r}"
    notes = apply(server, new)
    server.metrics.config_reloads.labels("ok").inc()
    message = "config reloaded" + (f" ({'; '.join(notes)})" if notes else "")
    log.warning("%s", message)
    return True, message


def apply(server: ProxyServer, new: ProxyConfig) -> list[str]:
    """Swap in ``new`` for new requests; returns notes on what waits for a restart."""
    from limpet.proxy import discovery
    from limpet.proxy.server import PoolRuntime

    old = server.config
    notes: list[str] = []
    for key in ("listeners", "admin", "workers"):
        if getattr(new, key) != getattr(old, key):
            notes.append(f"{key} change at the next restart")
    pools: dict[str, PoolRuntime] = {}
    started: list[PoolRuntime] = []
    for cfg in new.pools:
        current = server.pools.get(cfg.name)
        if current is not None and current.cfg == cfg:
            pools[cfg.name] = current
        elif current is not None and {_kind(cfg), _kind(current.cfg)} != {"static"}:
            pools[cfg.name] = current  # a discovery watcher is not swapped under a running pool
            notes.append(f"pool {cfg.name}: discovery changes at the next restart")
        else:
            runtime = PoolRuntime(cfg, server.secret, server.metrics)
            if current is not None:  # its sessions carry on: a scale-up rebalances them
                runtime.sessions.adopt(current.sessions)
            pools[cfg.name] = runtime
            started.append(runtime)
    retired = [rt for name, rt in server.pools.items() if pools.get(name) is not rt]
    kept = replace(new, listeners=old.listeners, admin=old.admin, workers=old.workers)
    kept = replace(kept, pools=tuple(pools[p.name].cfg for p in new.pools if p.name in pools))
    server.config = kept
    # what connections accepted from now on read through the protocol classes' context
    server.context.limits = server.fit_limits(kept)  # under the open-files limit (fdbudget)
    server.context.timeouts = kept.timeouts
    server.context.forwarding = kept.forwarding
    server.pools = pools
    server.routes = [(r, pools[r.pool]) for r in kept.routes]
    for runtime in started:
        if server.run_probes is not None:
            server.spawn(server.run_probes(server, runtime))
        if _kind(runtime.cfg) != "static":  # a pool new in this file may follow a discovery
            runtime.discovery_info = {
                "source": discovery.source_of(runtime.cfg.discovery),
                "updates": 0,
                "endpoints": [],
            }
            server.spawn(discovery.follow(runtime, runtime.cfg.discovery))
    for runtime in retired:
        for upstream in runtime.upstreams.values():
            upstream.close_all()  # idle ones; connections in use close when their exchange ends
    return notes


def _kind(cfg: Any) -> str:
    return str(cfg.discovery.kind)


def install_sighup(server: ProxyServer, loader: Loader | None) -> None:
    """SIGHUP re-reads the config (without one it only says so, instead of ending the process
    as SIGHUP's default action would)."""
    import signal

    server.config_loader = loader
    try:
        server.loop.add_signal_handler(signal.SIGHUP, lambda: reload(server))
    except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
        pass


def describe(result: tuple[bool, str]) -> dict[str, Any]:
    ok, message = result
    return {"reloaded": ok, "message": message}
