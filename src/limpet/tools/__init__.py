"""Tools around the proxy and hub: whoami (demo backend), check (stickiness probe), up (local cluster)."""
