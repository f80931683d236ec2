"""SANS-IO: backends, their states (healthy / ejected / draining) and pool snapshots."""
