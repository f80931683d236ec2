"""I/O: the proxy's admin listener: Prometheus metrics, health/readiness, status and drain."""
