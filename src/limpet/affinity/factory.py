"""SANS-IO: build the policy an AffinitySpec describes (the one place that maps modes to code)."""

from __future__ import annotations

import importlib
from typing import cast

from limpet.affinity.base import AffinityPolicy
from limpet.affinity.spec import AffinitySpec
from limpet.balancing.base import build_balancer
from limpet.errors import UsageError


def build_policy(
    spec: AffinitySpec, *, secret: bytes, pool_name: str = "default"
) -> AffinityPolicy:
    """A fresh policy for one pool; ``secret`` signs cookies (the same on every proxy process)."""
    try:
        balancer = build_balancer(spec.balancer)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if spec.mode == "none":
        from limpet.affinity.none import NonePolicy

        return NonePolicy(balancer)
    if spec.mode == "cookie":
        from limpet.affinity.cookie import CookiePolicy

        return CookiePolicy(spec, secret=secret, pool_name=pool_name, balancer=balancer)
    if spec.mode == "client-ip":
        from limpet.affinity.client_ip import ClientIPPolicy

        return ClientIPPolicy(spec)
    if spec.mode == "hash":
        from limpet.affinity.hash_key import HashPolicy

        return HashPolicy(spec, balancer=balancer)
    if spec.mode == "engineio":
        # Built by its own module (Engine.IO sid affinity), looked up lazily so this core
        # does not depend on it: limpet.affinity.engineio.build_policy(spec, secret=, pool_name=)
        try:
            module = importlib.import_module("limpet.affinity.engineio")
        except ModuleNotFoundError as exc:
            if exc.name != "limpet.affinity.engineio":
                raise
            raise UsageError("affinity engineio is not available in this build") from None
        build = module.build_policy
        return cast(AffinityPolicy, build(spec, secret=secret, pool_name=pool_name))
    raise UsageError(f"unknown affinity mode {spec.mode!r}")
