"""SANS-IO: backends, their states (healthy / ejected / draining) and pool snapshots.

``model``: the frozen views policies read; ``health``: the backend state machine (a table);
``pool``: the live, mutable pool the I/O side feeds and takes snapshots from.
"""
