"""The proxy's configuration: a frozen model (model.py) and the YAML loader (load.py)."""
