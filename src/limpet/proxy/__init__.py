"""I/O: the proxy's listeners, HTTP/1.1 protocol classes, upstream connection pool and tunnels."""
