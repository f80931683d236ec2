"""I/O: where a pool's backends come from: a static list, DNS, or Kubernetes EndpointSlices.

Every discovery is an async iterator of complete snapshots (see ``base.Discovery``).
"""
