"""`k8s render --target limpet --broker URL`: the hub on an external broker, none rendered."""

from __future__ import annotations

import pytest

from limpet.affinity.spec import AffinitySpec
from limpet.cli import main
from limpet.k8s.render import RenderOptions, render


def hub_args(manifests: list[dict]) -> list[str]:  # type: ignore[type-arg]
    hub = next(
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"].endswith("-hub")
    )
    return list(hub["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize(
    ("url", "chart"),
    [
        ("redis+cluster://r-0.r:6379,r-1.r:6379", "bitnami/redis-cluster"),
        ("redis+sentinel://s.redis:26379/mymaster", "sentinel.enabled=true"),
        ("nats://nats-0.nats:4222,nats-1.nats:4222", "nats/nats"),
    ],
)
def test_an_external_broker_is_used_and_no_redis_is_rendered(url: str, chart: str) -> None:
    rendered = render("limpet", AffinitySpec(), RenderOptions(broker=url))
    args = hub_args(rendered.manifests)
    assert args[args.index("--broker") + 1] == url
    assert not [m for m in rendered.manifests if m["metadata"]["name"].endswith("-redis")]
    assert any(chart in note for note in rendered.notes)


def test_twin_without_a_broker_an_in_cluster_redis_is_rendered() -> None:
    rendered = render("limpet", AffinitySpec(), RenderOptions())
    assert hub_args(rendered.manifests)[-1] == "redis://app-redis:6379"
    assert [m["kind"] for m in rendered.manifests if m["metadata"]["name"] == "app-redis"] == [
        "Deployment",
        "Service",
    ]


def test_a_malformed_broker_url_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["k8s", "render", "--target", "limpet", "--broker", "redis+sentinel://s:26379"])
    err = capsys.readouterr().err
    assert code == 2 and "MASTER_NAME" in err and "Traceback" not in err
