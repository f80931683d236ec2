"""I/O: active health probes that feed the pool's (sans-IO) health state machine."""
