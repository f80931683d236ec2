"""The one exception tree of limpet. Messages say what went wrong and what to do about it."""

from __future__ import annotations


class LimpetError(Exception):
    """Base of every error limpet raises on purpose; the CLI prints it without a traceback."""

    exit_code: int = 1


class UsageError(LimpetError):
    """The command line asks for something that cannot work (bad flag value, missing argument)."""

    exit_code = 2


class ConfigError(LimpetError):
    """The configuration is invalid; names the key path and, when known, the file and line."""

    exit_code = 2

    def __init__(
        self, message: str, *, key: str = "", source: str = "", line: int | None = None
    ) -> None:
        self.key = key
        self.source = source
        self.line = line
        where = source
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        parts = [p for p in (where, key) if p]
        prefix = ": ".join(parts)
        #: every error of a file when several were found (``combine``); else just this one
        self.errors: list[ConfigError] = [self]
        super().__init__(f"{prefix}: {message}" if prefix else message)

    @classmethod
    def combine(cls, errors: list[ConfigError]) -> ConfigError:
        """One error carrying several, one line each (by line number); the first names the
        file, line and key of the whole."""
        flat = [one for e in errors for one in e.errors]
        ordered = sorted(flat, key=lambda e: (e.line is None, e.line or 0))
        if len(ordered) == 1:
            return ordered[0]
        first = ordered[0]
        combined = cls("", key=first.key, source=first.source, line=first.line)
        combined.errors = ordered
        combined.args = ("\n".join(str(e) for e in ordered),)
        return combined


class MissingExtraError(LimpetError):
    """An optional part is configured but its library is not installed."""

    exit_code = 2

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the Python package {module!r}; install it with "
            f"`pip install 'limpet[{extra}]'`"
        )


class TokenError(LimpetError):
    """A session token (cookie value, Engine.IO sid) is malformed, tampered with or expired."""


class BrokerError(LimpetError):
    """The hub's broker is unreachable or answered something unexpected."""


class ChannelError(LimpetError):
    """A hub request names an invalid channel or carries an invalid payload."""


class DiscoveryError(LimpetError):
    """Backends could not be discovered (DNS, Kubernetes API)."""


class ManifestError(LimpetError):
    """A Kubernetes manifest could not be read or rendered."""


def require(module: str, *, feature: str, extra: str) -> object:
    """Import an optional module or raise MissingExtraError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(feature, extra, module) from exc
