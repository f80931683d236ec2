"""SANS-IO Kubernetes support: read sticky-session dialects, render manifests, lint them.

Everything here works on plain data (YAML text in, dicts and findings out); the CLI and
``limpet.discovery`` do the I/O.
"""
