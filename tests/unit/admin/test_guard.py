"""The admin guard: reads open, mutations need the token, cross-origin browser requests refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.admin.guard import check, same_origin

TOKEN = "s3cret-token"
HOST = {"Host": "127.0.0.1:9100"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("path_method", ["GET", "HEAD", "get"])
def test_reads_need_no_token(path_method: str) -> None:
    assert check(path_method, HOST, TOKEN) is None
    assert check(path_method, HOST, None) is None


@pytest.mark.parametrize(
    ("headers", "token", "status"),
    [
        (HOST, TOKEN, 401),  # no Authorization
        ({**HOST, "Authorization": "Bearer nope"}, TOKEN, 401),
        ({**HOST, "Authorization": f"Basic {TOKEN}"}, TOKEN, 401),
        ({**HOST, **AUTH}, None, 403),  # no token configured: the admin is read-only
        ({**HOST, **AUTH}, TOKEN, None),
        ({**HOST, "Authorization": f"bearer  {TOKEN} "}, TOKEN, None),
    ],
)
def test_mutations_need_the_token(
    headers: dict[str, str], token: str | None, status: int | None
) -> None:
    refusal = check("POST", headers, token)
    assert (refusal.status if refusal else None) == status


def test_a_cross_origin_text_plain_post_is_refused_even_with_the_token() -> None:
    evil = {**HOST, **AUTH, "Origin": "http://evil.example", "Content-Type": "text/plain"}
    refusal = check("POST", evil, TOKEN)
    assert refusal is not None and refusal.status == 403 and "evil.example" in refusal.reason
    # twin: the dashboard's own origin passes
    assert check("POST", {**evil, "Origin": "http://127.0.0.1:9100"}, TOKEN) is None


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_fetch_metadata_from_another_site_is_refused(site: str) -> None:
    refusal = check("GET", {**HOST, "Sec-Fetch-Site": site}, TOKEN)
    assert refusal is not None and refusal.status == 403
    assert check("GET", {**HOST, "Sec-Fetch-Site": "same-origin"}, TOKEN) is None


@given(st.text(max_size=40), st.sampled_from(["POST", "PUT", "DELETE", "PATCH"]))
def test_no_origin_but_our_own_gets_through(origin: str, method: str) -> None:
    refusal = check(method, {**HOST, **AUTH, "Origin": origin}, TOKEN)
    assert (refusal is None) == same_origin(origin, HOST["Host"])


@given(st.text(max_size=40))
def test_no_token_but_the_right_one_mutates(given_token: str) -> None:
    refusal = check("POST", {**HOST, "Authorization": f"Bearer {given_token}"}, TOKEN)
    assert (refusal is None) == (given_token.strip() == TOKEN)


def test_a_bearer_token_with_undecodable_bytes_is_a_wrong_token() -> None:
    # aiohttp hands header bytes that are not UTF-8 over as lone surrogates
    for sent in ("caf\udce9", "café", "\udcff" * 3):
        refusal = check("POST", {**HOST, "Authorization": f"Bearer {sent}"}, TOKEN)
        assert refusal is not None and refusal.status == 401
    # twin: the configured token itself may be non-ASCII
    assert check("POST", {**HOST, "Authorization": "Bearer café"}, "café") is None


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:9100", "127.0.0.1.nip.io:9100", "localhost.evil.example"],
)
def test_a_host_the_admin_was_not_given_is_refused(host: str) -> None:
    refusal = check("GET", {"Host": host}, TOKEN)
    assert refusal is not None and refusal.status == 421 and "admin-hosts" in refusal.reason


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:9100",
        "10.0.3.7:9100",  # a kubelet probe: the pod's address
        "[::1]:9100",
        "localhost:9100",
        "LOCALHOST.",
        "dash.localhost",
        "admin.internal:9100",  # configured
    ],
)
def test_twin_loopback_addresses_and_configured_names_are_answered(host: str) -> None:
    assert check("GET", {"Host": host}, TOKEN, ("admin.internal",)) is None
