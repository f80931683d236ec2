"""``limpet hub --config FILE``: YAML -> the hub's hooks, limits and namespaces.

The proxy's loader style (``limpet.config.nodes``): every error names the file, the line and the
key path, and exits 2. Command-line flags override the file (``limpet.hub.cli``).

    hooks:                      # the application (connect and rpc; the default for namespaces)
      url: http://127.0.0.1:9000/hooks
      secret-file: /run/secrets/hook
      fail-open: false
      timeout: 2
      concurrency: 64
    limits:                     # per client, the defaults every namespace starts from
      channels-per-client: 128
      subscribes-per-second: 50
      publishes-per-second: 1000
    namespaces:
      "room:":
        history-size: 100
        history-ttl: 600
        presence: true
        join-leave: true
        publish: true
        anonymous-read: false
        max-subscribers: 500
        channels-per-client: 16
        hooks: {subscribe: true, publish: true, fail-open: false}   # url: another application
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from limpet.config.nodes import Ctx, compose_document, mapping, typed
from limpet.errors import ConfigError
from limpet.hub.channels import HistoryPolicy
from limpet.hub.limits import ClientLimits
from limpet.hub.namespaces import HookRules, Namespace, Namespaces


@dataclass(frozen=True)
class HookSettings:
    url: str | None = None
    secret_file: str | None = None
    fail_open: bool = False
    timeout: float = 2.0
    concurrency: int = 64
    queue: int = 1024


@dataclass(frozen=True)
class HubConfig:
    hooks: HookSettings = field(default_factory=HookSettings)
    limits: ClientLimits = field(default_factory=ClientLimits)
    #: namespaces as written (their unset keys inherit from ``limits`` and the default history)
    namespaces: tuple[tuple[str, dict[str, Any]], ...] = ()


_LIMIT_KEYS = {
    "channels-per-client": ("channels_per_client", int),
    "subscribes-per-second": ("subscribes_per_second", float),
    "publishes-per-second": ("publishes_per_second", float),
}
_HOOK_KEYS = {
    "url": ("url", str),
    "secret-file": ("secret_file", str),
    "fail-open": ("fail_open", bool),
    "timeout": ("timeout", float),
    "concurrency": ("concurrency", int),
    "queue": ("queue", int),
}
_NS_KEYS = {
    "history-size": int,
    "history-ttl": float,
    "presence": bool,
    "join-leave": bool,
    "publish": bool,
    "anonymous-read": bool,
    "max-subscribers": int,
    **{k: kind for k, (_, kind) in _LIMIT_KEYS.items()},
}
_NS_HOOK_KEYS = {"url": str, "subscribe": bool, "publish": bool, "fail-open": bool}


def _unknown(ctx: Ctx, name: str, known: Any, key: str, node: yaml.Node) -> ConfigError:
    return ctx.error(
        f"unknown key {name!r} (expected one of {', '.join(sorted(known))})", key, node
    )


def _value(ctx: Ctx, node: yaml.Node, key: str, kind: type) -> Any:
    if isinstance(node, yaml.ScalarNode) and node.value == "" and node.tag.endswith(":null"):
        raise ctx.error(f"no value (expected {kind.__name__})", key, node)
    try:
        value = typed(ctx, node, key, kind)
    except yaml.YAMLError as exc:  # what composed may still not load (issue 17)
        raise ctx.error(f"not a valid value: {getattr(exc, 'problem', exc)}", key, node) from None
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ctx.error("must not be negative", key, node)
    if kind is str and not value:
        raise ctx.error("must not be empty", key, node)
    return value


def _fields(
    ctx: Ctx, node: yaml.Node, key: str, known: dict[str, Any], errors: list[ConfigError]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        items = mapping(ctx, node, key)
    except ConfigError as exc:
        errors.append(exc)
        return out
    for name, (knode, vnode) in items.items():
        path = f"{key}.{name}"
        spec = known.get(name)
        if spec is None:
            errors.append(_unknown(ctx, name, known, path, knode))
            continue
        try:
            if isinstance(spec, dict):
                out[name] = _fields(ctx, vnode, path, spec, errors)
            else:
                out[name] = _value(ctx, vnode, path, spec[1] if isinstance(spec, tuple) else spec)
        except ConfigError as exc:
            errors.append(exc)
    return out


def parse_hub_config(text: str, source: str = "<config>") -> HubConfig:
    """Parse and check a hub config document; every error in it is reported (one per line)."""
    ctx = Ctx(source)
    root = compose_document(text, source)
    if root is None:
        return HubConfig()
    errors: list[ConfigError] = []
    known = {"hooks": _HOOK_KEYS, "limits": _LIMIT_KEYS, "namespaces": None}
    cfg = HubConfig()
    for name, (knode, vnode) in mapping(ctx, root, "").items():
        if name not in known:
            errors.append(_unknown(ctx, name, known, name, knode))
        elif name == "hooks":
            got = _fields(ctx, vnode, name, _HOOK_KEYS, errors)
            cfg = replace(cfg, hooks=HookSettings(**{_HOOK_KEYS[k][0]: v for k, v in got.items()}))
        elif name == "limits":
            got = _fields(ctx, vnode, name, _LIMIT_KEYS, errors)
            cfg = replace(
                cfg, limits=ClientLimits(**{_LIMIT_KEYS[k][0]: v for k, v in got.items()})
            )
        else:
            spaces: list[tuple[str, dict[str, Any]]] = []
            try:
                entries = mapping(ctx, vnode, name)
            except ConfigError as exc:
                errors.append(exc)
                entries = {}
            for prefix, (pnode, body) in entries.items():
                path = f"namespaces.{prefix}"
                if not prefix:
                    errors.append(ctx.error("a namespace needs a non-empty prefix", path, pnode))
                    continue
                got = _fields(ctx, body, path, {**_NS_KEYS, "hooks": _NS_HOOK_KEYS}, errors)
                if got.get("history-ttl") == 0:
                    errors.append(ctx.error("must be > 0", f"{path}.history-ttl", body))
                spaces.append((prefix, got))
            cfg = replace(cfg, namespaces=tuple(spaces))
    if errors:
        raise (
            ConfigError("\n".join(str(e) for e in errors), source="")
            if len(errors) > 1
            else errors[0]
        )
    return cfg


def load_hub_config(path: str | Path) -> HubConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=str(p)) from None
    return parse_hub_config(text, str(p))


def build_namespaces(
    cfg: HubConfig, history: HistoryPolicy, limits: ClientLimits, hook_url: str | None,
    fail_open: bool,
) -> Namespaces:  # fmt: skip
    """The namespaces: the default one from ``history``/``limits``/the hook flags, each
    configured one from its keys, inheriting what it leaves out from the default."""
    default = Namespace(
        "", history, limits=limits, hooks=HookRules(url=hook_url, fail_open=fail_open)
    )
    spaces = []
    for prefix, got in cfg.namespaces:
        hooks = got.get("hooks", {})
        ns_limits = replace(limits, **{_LIMIT_KEYS[k][0]: got[k] for k in _LIMIT_KEYS if k in got})
        spaces.append(
            Namespace(
                prefix,
                HistoryPolicy(
                    got.get("history-size", history.size), got.get("history-ttl", history.ttl)
                ),
                presence=got.get("presence", True),
                join_leave=got.get("join-leave", True),
                publish=got.get("publish", True),
                anonymous_read=got.get("anonymous-read", True),
                max_subscribers=got.get("max-subscribers", 0),
                limits=ns_limits,
                hooks=HookRules(
                    url=hooks.get("url", hook_url),
                    subscribe=hooks.get("subscribe", True),
                    publish=hooks.get("publish", True),
                    fail_open=hooks.get("fail-open", fail_open),
                ),
            )
        )
    return Namespaces(default, tuple(spaces))
