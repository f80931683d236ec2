"""The hub: a socket.io channel server whose replicas share a broker (memory, Redis, NATS)."""
