"""Client IP, scheme and host: forwarding headers are believed only from trusted proxies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.identity.proxypresets import PRESETS
from gateway.identity.trustedproxies import TrustedProxies, parse_ip


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


TRUSTED = [*PRESETS["cloudflare"], "10.0.0.0/8"]
CDN = TrustedProxies(TRUSTED, headers=["CF-Connecting-IP", "True-Client-IP"])
RFC7239 = TrustedProxies(TRUSTED, chain="forwarded")
CF_EDGE = "173.245.48.10"


@pytest.mark.parametrize(("peer", "pairs", "expected"), [
    # Untrusted peer: its own address, whatever it claims.
    ("203.0.113.7", [("X-Forwarded-For", "1.1.1.1"), ("CF-Connecting-IP", "2.2.2.2")],
     "203.0.113.7"),
    # Trusted CDN edge: its client-IP header.
    (CF_EDGE, [("CF-Connecting-IP", "198.51.100.4")], "198.51.100.4"),
    (CF_EDGE, [("CF-Connecting-IP", "2001:db8::42")], "2001:db8::42"),
    (CF_EDGE, [("True-Client-IP", "198.51.100.5")], "198.51.100.5"),
    # Header garbage falls through to the forwarding chain.
    (CF_EDGE, [("CF-Connecting-IP", "unknown"), ("X-Forwarded-For", "198.51.100.6")],
     "198.51.100.6"),
    # X-Forwarded-For: right to left, skipping trusted hops.
    ("10.0.0.2", [("X-Forwarded-For", "192.0.2.1, 198.51.100.9, 10.1.1.1")], "198.51.100.9"),
    ("10.0.0.2", [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "10.1.1.1")],
     "192.0.2.1"),
    # Spoofing attempt: the client prepends a fake address; the real one is the rightmost
    # untrusted.
    ("10.0.0.2", [("X-Forwarded-For", "6.6.6.6, 198.51.100.10")], "198.51.100.10"),
    # Ports, brackets, zone ids stripped; garbage skipped.
    ("10.0.0.2", [("X-Forwarded-For", "[2001:db8::1]:443, nonsense, 10.9.9.9")],
     "2001:db8::1"),
    ("10.0.0.2", [("X-Forwarded-For", "198.51.100.11:5123")], "198.51.100.11"),
    ("10.0.0.2", [("X-Forwarded-For", "fe80::1%eth0")], "fe80::1"),
    # IPv4-mapped IPv6 becomes IPv4.
    ("::ffff:10.0.0.2", [("X-Forwarded-For", "::ffff:198.51.100.12")], "198.51.100.12"),
    # Only the configured chain is read: a Forwarded header the visitor sent is ignored.
    ("10.0.0.2", [("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "198.51.100.14")],
     "198.51.100.14"),
    # Every hop trusted: the leftmost is the client.
    ("10.0.0.2", [("X-Forwarded-For", "10.7.7.7, 10.8.8.8")], "10.7.7.7"),
    # Nothing usable: the peer.
    ("10.0.0.2", [("X-Forwarded-For", "garbage")], "10.0.0.2"),
    (None, [], None),
])
def test_client_ip(peer: str | None, pairs: list[tuple[str, str]], expected: str | None) -> None:
    assert CDN.client_ip(peer, headers(*pairs)) == expected


@pytest.mark.parametrize(("pairs", "expected"), [
    ([("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https, for=10.3.3.3'),
      ("X-Forwarded-For", "1.1.1.1")], "2001:db8:cafe::17"),
    ([("Forwarded", "for=_hidden, for=198.51.100.13")], "198.51.100.13"),
    ([("X-Forwarded-For", "198.51.100.15")], "10.0.0.2"),  # XFF is not read in this mode
])
def test_rfc7239_forwarded_chain(pairs: list[tuple[str, str]], expected: str) -> None:
    assert RFC7239.client_ip("10.0.0.2", headers(*pairs)) == expected


def test_single_address_headers_are_off_by_default() -> None:
    # A visitor can send CF-Connecting-IP through a proxy that does not overwrite it.
    plain = TrustedProxies(TRUSTED)
    pairs = headers(("CF-Connecting-IP", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.16"))
    assert plain.client_ip("10.0.0.2", pairs) == "198.51.100.16"


def test_no_trusted_proxies_means_the_socket_peer() -> None:
    direct = TrustedProxies([])
    assert direct.client_ip("10.0.0.2", headers(("X-Forwarded-For", "1.1.1.1"))) == "10.0.0.2"


def test_header_list_is_configurable() -> None:
    nginx = TrustedProxies(["127.0.0.0/8"], headers=["X-Real-IP"])
    pairs = headers(("X-Real-IP", "198.51.100.20"), ("CF-Connecting-IP", "1.1.1.1"))
    assert nginx.client_ip("127.0.0.1", pairs) == "198.51.100.20"


@pytest.mark.parametrize(("address", "truncated"), [
    ("198.51.100.77", "198.51.100.0"), ("2001:db8:abcd:1234::1", "2001:db8:abcd::"),
])
def test_truncation_keeps_the_network_part(address: str, truncated: str) -> None:
    private = TrustedProxies([], truncate=True)
    assert private.client_ip(address, headers()) == truncated


def test_scheme_and_host_only_from_trusted_peers() -> None:
    claimed = headers(("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "Shop.Example.com:443"))
    assert CDN.scheme("10.0.0.2", claimed, "http") == "https"
    assert CDN.host("10.0.0.2", claimed, "origin.internal") == "shop.example.com"
    assert CDN.scheme("203.0.113.7", claimed, "http") == "http"
    assert CDN.host("203.0.113.7", claimed, "origin.internal:8080") == "origin.internal"
    forwarded = headers(("Forwarded", 'for=1.2.3.4;proto=https;host="www.example.org"'))
    assert RFC7239.scheme("10.0.0.2", forwarded, "http") == "https"
    assert RFC7239.host("10.0.0.2", forwarded, "x") == "www.example.org"
    assert CDN.scheme("10.0.0.2", forwarded, "http") == "http"  # not the configured chain


@given(st.text())
def test_parse_ip_never_raises(text: str) -> None:
    parse_ip(text)


@given(st.lists(st.text(), max_size=5))
def test_client_ip_never_raises_on_garbage_chains(hops: list[str]) -> None:
    pairs = [("X-Forwarded-For", ", ".join(h.replace("\n", "") for h in hops))]
    result = CDN.client_ip("10.0.0.2", headers(*pairs))
    assert result is not None and parse_ip(result) is not None


def test_a_private_peer_without_trusted_proxies_is_noticed_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    headers = CIMultiDictProxy(CIMultiDict())
    proxies = TrustedProxies([])
    assert proxies.client_ip("127.0.0.1", headers) == "127.0.0.1"  # this machine: fine
    assert proxies.client_ip("81.2.69.142", headers) == "81.2.69.142"
    assert proxies.private_peer is None
    assert proxies.client_ip("172.18.0.5", headers) == "172.18.0.5"
    assert proxies.client_ip("172.18.0.6", headers) == "172.18.0.6"
    assert proxies.private_peer == "172.18.0.5"
    assert caplog.text.count("private address") == 1
    trusting = TrustedProxies(["172.16.0.0/12"])
    trusting.client_ip("172.18.0.5", headers)
    assert trusting.private_peer is None
