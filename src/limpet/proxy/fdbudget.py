"""The proxy's file descriptors: a reserve that clients cannot take.

When clients hold every descriptor, health probes fail with "Too many open files" and eject
every backend, and the admin (``/healthz``, ``/metrics``) stops answering: the process looks
dead while it is only full. HAProxy avoids it by computing its socket budget from ``maxconn``
(two descriptors per proxied connection, plus listeners, checks and the stats socket), raising
``RLIMIT_NOFILE`` to it, and lowering ``maxconn`` when the limit cannot be raised. nginx counts
upstream connections in ``worker_connections`` and stops accepting while fewer than an eighth of
them are free (``ngx_accept_disabled``), so the last eighth stays for the connections a worker
makes itself. limpet does the same as HAProxy, at start and on every reload:

- the soft ``RLIMIT_NOFILE`` is raised to the hard limit (as HAProxy and Go programs do);
- ``max-connections`` is lowered, with a warning, until two descriptors per client connection
  (downstream + upstream), the idle upstream connections each backend may keep, and a reserve
  (the admin's own connection limit plus ``RESERVE`` for probes, DNS, config reads and logs)
  fit under it. TLS handshakes count against ``max-connections`` (``proxy/handshake.py``).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from limpet.config.model import LimitsConfig

log = logging.getLogger("limpet.proxy")

#: descriptors kept for what the proxy opens itself besides the admin's connections: health
#: probes, DNS queries, the Kubernetes watch, config and certificate reads, log files
RESERVE = 64
#: idle upstream connections a backend may keep (UpstreamPool's max_idle)
IDLE_PER_BACKEND = 64
#: max-connections is never lowered below this (a tiny limit is the operator's to fix)
FLOOR = 16


def fit(limits: LimitsConfig, nofile: int, backends: int) -> tuple[LimitsConfig, str | None]:
    """``limits`` with ``max_connections`` lowered to fit ``nofile`` descriptors; and why, when
    it was lowered (pure: the caller reads the limit and logs)."""
    reserve = RESERVE + limits.admin_connections + IDLE_PER_BACKEND * backends
    room = max(FLOOR, (nofile - reserve) // 2)
    if limits.max_connections <= room:
        return limits, None
    note = (
        f"max-connections lowered from {limits.max_connections} to {room}: the open-files limit"
        f" is {nofile} (2 per client connection, {reserve} kept for the admin, health probes"
        " and idle upstream connections); raise `ulimit -n` to serve more"
    )
    return replace(limits, max_connections=room), note


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one; the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # a container may refuse: keep what we have
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def apply(limits: LimitsConfig, backends: int, nofile: int) -> LimitsConfig:
    """``fit`` with its warning logged (start and reload)."""
    fitted, note = fit(limits, nofile, backends)
    if note:
        log.warning("%s", note)
    return fitted
