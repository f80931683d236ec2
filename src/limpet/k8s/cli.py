"""`limpet k8s lint|render|explain`: the I/O around the sans-IO lint, render and dialects."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from limpet.helpformat import HelpFormatter
from limpet.k8s.render import TARGETS


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="k8s_command", metavar="ACTION")
    lint = sub.add_parser(
        "lint",
        formatter_class=HelpFormatter,
        help="find sticky-session mistakes in manifests",
        description="Find sticky-session mistakes in Kubernetes manifests, each with its file, "
        "line, rule and a fix. Lint the files of one application together. Exits 1 when any "
        "finding is an error.",
    )
    lint.add_argument("files", nargs="+", metavar="FILE", help="YAML files; - for stdin")
    lint.add_argument(
        "--format", choices=("text", "json"), default="text", help="report format (default: text)"
    )
    lint.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour in text (default: auto, when the output is a terminal)",
    )
    lint.add_argument(
        "--fix",
        action="store_true",
        help="rewrite each FILE with pasted Unicode spaces, smart quotes and full-width "
        "punctuation made ASCII (stdin: print the fixed text), then lint the result",
    )

    render = sub.add_parser(
        "render",
        help="print manifests for one affinity rule on a platform",
        description="Print complete manifests (YAML, on stdout) that give one affinity rule on "
        "one platform; notes and lint warnings go to stderr. What lint would call an error is "
        "refused.",
        formatter_class=HelpFormatter,
    )
    render.add_argument(
        "--target",
        required=True,
        choices=TARGETS,
        metavar="PLATFORM",
        help=f"where it runs: {', '.join(TARGETS)}",
    )
    render.add_argument(
        "--affinity",
        default="cookie",
        metavar="RULE",
        help="cookie, client-ip, none, engineio, or hash:header:H, hash:cookie:C, "
        "hash:query:Q (default: cookie)",
    )
    render.add_argument("--cookie-name", default="limpet", help="the affinity cookie's name")
    render.add_argument(
        "--cookie-ttl",
        type=int,
        default=None,
        help="cookie lifetime in seconds (default: a session cookie)",
    )
    render.add_argument(
        "--client-ip-timeout", type=int, default=10800, help="client-IP pin, in seconds"
    )
    render.add_argument(
        "--name", default="app", help="name of the Service and its objects (default: app)"
    )
    render.add_argument("--namespace", default="default", help="namespace of every object")
    render.add_argument("--port", type=int, default=80, help="Service port")
    render.add_argument("--target-port", type=int, default=8080, help="the pods' port")
    render.add_argument(
        "--image",
        default="ghcr.io/limpet/limpet:latest",
        help="backend image (--target limpet: the limpet image, as scripts/image tags it)",
    )
    render.add_argument(
        "--replicas", type=int, default=3, help="backend pods (limpet target: at least 2 proxies)"
    )
    render.add_argument("--host", default="app.example.com", help="Ingress host")
    render.add_argument(
        "--traefik-version",
        type=int,
        choices=(1, 2, 3),
        default=3,
        help="traefik target: 1 and 2 annotate the Service, 3 renders its CRDs",
    )
    render.add_argument(
        "--gateway-class",
        default="",
        metavar="CLASS",
        help="gatewayClassName of the Gateway (gateway-api: yours, see kubectl get gatewayclass; "
        "gke-gateway: default gke-l7-global-external-managed)",
    )
    render.add_argument(
        "--canary-weight",
        type=int,
        default=None,
        metavar="PERCENT",
        help="gateway-api, ingress-nginx: send PERCENT of the traffic to a second Service, "
        "NAME-canary (read back by the dialects; limpet's own canary groups: docs/proxy.md)",
    )
    render.add_argument(
        "--broker",
        default="",
        metavar="URL",
        help="--target limpet: the hub's broker, e.g. redis+cluster://H:P,H:P or "
        "nats://H:P,H:P (default: a single in-cluster redis-server is rendered)",
    )

    explain = sub.add_parser(
        "explain",
        formatter_class=HelpFormatter,
        help="which affinity do these manifests (or this live Service) configure?",
        description="Say which affinity rule the manifests (or a live Service and what routes "
        "to it) configure, which dialect it comes from, and what else was found and ignored: "
        "what limpet proxy --kubernetes-service would derive.",
    )
    explain.add_argument("files", nargs="*", metavar="FILE", help="YAML files; - for stdin")
    explain.add_argument("--service", default=None, help="Service name (default: the first)")
    explain.add_argument(
        "--kubernetes-service",
        metavar="NAMESPACE/NAME",
        default=None,
        help="read the Service and what configures it from the cluster instead of files",
    )
    explain.add_argument(
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="default: in a pod its service account, else $KUBECONFIG or ~/.kube/config",
    )
    explain.add_argument("--context", default=None, help="kubeconfig context")
    explain.add_argument(
        "--format", choices=("text", "json"), default="text", help="report format (default: text)"
    )
    parser.set_defaults(_k8s_parser=parser)


def _read(files: list[str]) -> list[tuple[str, str]]:
    from limpet.errors import ManifestError

    inputs: list[tuple[str, str]] = []
    for name in files:
        try:
            if name == "-":
                inputs.append(("<stdin>", sys.stdin.read()))
            else:
                with open(name, encoding="utf-8") as f:
                    inputs.append((name, f.read()))
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"cannot read {name}: {exc}") from None
    return inputs


_COLOURS = {"error": "\033[31m", "warning": "\033[33m"}


def _write_fixed(inputs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``lint --fix``: each input with its look-alike characters replaced, written back."""
    import os
    import tempfile

    from limpet.errors import ManifestError
    from limpet.k8s.yamlnodes import lookalikes

    fixed: list[tuple[str, str]] = []
    for name, text in inputs:
        clean, found = lookalikes(text)
        fixed.append((name, clean))
        if name == "<stdin>":
            sys.stdout.write(clean)
            continue
        if not found:
            continue
        folder = os.path.dirname(os.path.abspath(name))
        try:  # a temporary file renamed over the original: never a half-written manifest
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".limpet-fix-")
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(clean)
            os.chmod(tmp, os.stat(name).st_mode & 0o7777)
            os.replace(tmp, name)
        except OSError as exc:
            raise ManifestError(f"cannot write {name}: {exc}") from None
        print(f"{name}: replaced {len(found)} character(s)", file=sys.stderr)
    return fixed


def run_lint(args: argparse.Namespace) -> int:
    from limpet.k8s.lint import has_errors, lint_sources

    inputs = _read(args.files)
    if args.fix:
        inputs = _write_fixed(inputs)
        if args.files == ["-"]:
            return 0  # stdout holds the fixed text; lint it with a second run
    findings = lint_sources(inputs)
    if args.format == "json":
        print(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        for f in findings:
            sev = f"{_COLOURS[f.severity]}{f.severity}\033[0m" if colour else f.severity
            where = f"{f.line}:{f.column}" if f.column else f"{f.line}"
            print(f"{f.file}:{where}: {sev} [{f.rule}] {f.message}")
            print(f"    fix: {f.hint}")
        errors = sum(f.severity == "error" for f in findings)
        summary = f"{errors} error(s), {len(findings) - errors} warning(s)"
        print(summary if findings else "no findings", file=sys.stderr)
    return 1 if has_errors(findings) else 0


def run_render(args: argparse.Namespace) -> int:
    import secrets
    from dataclasses import replace

    from limpet.affinity.spec import AffinitySpec
    from limpet.errors import UsageError
    from limpet.k8s.objects import RenderOptions
    from limpet.k8s.render import render
    from limpet.k8s.yamlnodes import dump_all

    if (args.cookie_ttl or 0) < 0:
        raise UsageError("--cookie-ttl must not be negative")
    if not 0 < args.client_ip_timeout <= 86400:
        raise UsageError("--client-ip-timeout must be 1..86400 (the Kubernetes limit)")
    spec = AffinitySpec.from_flag(args.affinity)
    spec = replace(
        spec,
        cookie_name=args.cookie_name,
        cookie_ttl=args.cookie_ttl or None,
        client_ip_timeout=args.client_ip_timeout,
    )
    options = RenderOptions(
        name=args.name,
        namespace=args.namespace,
        port=args.port,
        target_port=args.target_port,
        image=args.image,
        limpet_image=args.image,  # --target limpet: the proxy runs the same image as the hub
        replicas=args.replicas,
        host=args.host,
        traefik_version=args.traefik_version,
        gateway_class=args.gateway_class,
        secret=secrets.token_urlsafe(32) if args.target == "limpet" else "",
        broker=_broker_url(args.broker),
        canary_weight=args.canary_weight,
    )
    rendered = render(args.target, spec, options)
    sys.stdout.write(dump_all(rendered.manifests))
    for note in rendered.notes:
        print(f"note: {note}", file=sys.stderr)
    for warning in rendered.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _broker_url(url: str) -> str:
    """Refuse a malformed --broker at render time, as `limpet hub` would at start."""
    if url:
        from limpet.hub.brokers.urls import parse_broker_url

        if parse_broker_url(url).kind == "memory":
            from limpet.errors import UsageError

            raise UsageError("--broker memory cannot be shared by hub replicas; give a URL")
    return url


def run_explain(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from limpet.errors import UsageError
    from limpet.k8s.dialects import derive
    from limpet.k8s.yamlnodes import expand_lists, parse

    objects: list[Any] = []
    service = args.service
    if args.kubernetes_service:
        import asyncio

        from limpet.discovery.kubernetes import fetch_service_objects, parse_service_ref

        namespace, service = parse_service_ref(args.kubernetes_service)
        objects += asyncio.run(
            fetch_service_objects(
                namespace, service, kubeconfig=args.kubeconfig, context=args.context
            )
        )
    elif not args.files:
        raise UsageError("give manifest files (or - for stdin) or --kubernetes-service NS/NAME")
    for name, text in _read(args.files):
        documents, problems = parse(text)
        if problems:
            from limpet.errors import ManifestError

            p = problems[0]
            raise ManifestError(f"{name}:{p.line}: {p.message}")
        objects += [doc.obj for doc in expand_lists(documents) if isinstance(doc.obj, dict)]
    derivation = derive(objects, service)
    if args.format == "json":
        out = {"dialect": derivation.dialect, "spec": asdict(derivation.spec)}
        print(json.dumps({**out, "notes": list(derivation.notes)}, indent=2))
    else:
        print(f"affinity: {derivation.spec.flag()}  (from {derivation.dialect})")
        for note in derivation.notes:
            print(f"  {note}")
    return 0


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "k8s_command", None)
    if action == "lint":
        return run_lint(args)
    if action == "render":
        return run_render(args)
    if action == "explain":
        return run_explain(args)
    args._k8s_parser.print_help()
    return 2
