"""limpet: sticky-session load balancing and a scale-out socket.io channel hub."""

from limpet.errors import ConfigError, LimpetError

__version__ = "0.1.0"
__all__ = ["ConfigError", "LimpetError", "__version__"]
