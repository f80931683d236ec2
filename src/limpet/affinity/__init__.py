"""SANS-IO: affinity policies decide which backend a request goes to; no sockets, no clocks."""
