"""SANS-IO: balancers choose among eligible backends when no pin or hash decides."""

from __future__ import annotations

from limpet.balancing.base import Balancer, build_balancer

__all__ = ["Balancer", "build_balancer"]
