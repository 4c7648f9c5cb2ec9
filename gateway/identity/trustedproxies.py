"""What the original request looked like, believing forwarding headers only from trusted proxies.

Client IP:
From an untrusted peer the socket address is the answer. From a trusted peer (a CDN or reverse
proxy listed in `server.trusted_proxies`): the first of `server.client_ip_headers` present
(none by default), else the forwarding chain (`X-Forwarded-For` by default, or RFC 7239
`Forwarded`) walked right to left, skipping trusted hops and garbage, taking the first untrusted
address. Only the configured chain header is read: proxies append to the one they manage and
pass the other through untouched, so reading both would let a visitor choose their own IP. For
the same reason a single-address header is listed only when the edge always overwrites it
(Cloudflare's `CF-Connecting-IP` is; a `Fastly-Client-IP` the visitor sent is not, unless the
edge pins it). IPv6 stays IPv6 (Meta prefers it); ports, brackets and
zone ids are stripped; IPv4-mapped IPv6 becomes IPv4.

Scheme and host (for cookie attributes): `X-Forwarded-Proto` / `X-Forwarded-Host` (or the last
`Forwarded` element's `proto=` / `host=`) from a trusted peer, else the connection's own.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from functools import lru_cache

from multidict import CIMultiDictProxy

__all__ = ["IPAddress", "TrustedProxies", "is_loopback_host", "parse_ip", "truncate_ip"]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8192)
def is_loopback_host(text: str) -> bool:
    """Whether a host (or `host:port`, or a Host header) names this machine: a loopback
    address or `localhost`."""
    name = text.strip().lower()
    if name == "localhost" or name.startswith("localhost:"):
        return True
    address = parse_ip(name)
    return address is not None and address.is_loopback


def parse_ip(text: str | None) -> IPAddress | None:
    """An address from header text such as `1.2.3.4:80`, `[2001:db8::1]:443`, `fe80::1%eth0`,
    or `"[::1]"`; None for anything else (`unknown`, `_hidden`, garbage)."""
    if not text:
        return None
    value = text.strip().strip('"').strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.partition(":")[0]
    value = value.partition("%")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def truncate_ip(address: IPAddress) -> IPAddress:
    """Keep the network part only: /24 for IPv4, /48 for IPv6."""
    prefix = 24 if address.version == 4 else 48
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address


def _forwarded(values: Iterable[str], parameter: str) -> list[str]:
    """One parameter (`for`, `proto`, `host`) of RFC 7239 `Forwarded` headers, in order."""
    found = []
    for header in values:
        for element in header.split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == parameter:
                    found.append(value.strip().strip('"'))
    return found


class TrustedProxies:
    def __init__(
        self,
        trusted: Sequence[str],
        headers: Sequence[str] = (),
        *,
        chain: str = "x-forwarded-for",
        truncate: bool = False,
    ) -> None:
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in trusted
        )
        self._headers = tuple(headers)
        self._chain = "Forwarded" if chain == "forwarded" else "X-Forwarded-For"
        self._truncate = truncate
        # The first private-address peer seen while no proxy is trusted: most likely a proxy
        # (Docker, a load balancer) the config does not list, so every visitor looks like it.
        self.private_peer: str | None = None
        # Results are cached by the exact header text: the same visitor and proxy chain
        # repeat across a session's hits, and ipaddress objects are slow to build.
        self.trusts = lru_cache(maxsize=4096)(self._trusts)
        self._peer_ip = lru_cache(maxsize=8192)(self._format_peer)
        self._chain_ip = lru_cache(maxsize=16384)(self._resolve_chain)

    def _check_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._networks)

    def _trusts(self, peer: str | None) -> bool:
        """Whether the socket peer is one of our proxies."""
        address = parse_ip(peer)
        return address is not None and bool(self._networks) and self._check_trusted(address)

    def client_ip(self, peer: str | None, headers: CIMultiDictProxy[str]) -> str | None:
        """The client's address as text, or None when the peer itself is unknown."""
        if not self.trusts(peer):
            if not self._networks and self.private_peer is None:
                self._notice_private(peer)
            return self._peer_ip(peer)
        return self._chain_ip(
            peer,
            tuple(headers.get(name) for name in self._headers),
            tuple(headers.getall(self._chain, ())),
        )

    def _notice_private(self, peer: str | None) -> None:
        if _private_peer(peer):
            self.private_peer = str(parse_ip(peer))
            log.warning("hits arrive from the private address %s while server.trusted_proxies "
                        "is empty: if a proxy (Docker, a load balancer) forwards them, list it "
                        "there, or every visitor gets its address (docs/deploy-behind-a-cdn.md)",
                        self.private_peer)

    def _format_peer(self, peer: str | None) -> str | None:
        return self._format(parse_ip(peer))

    def _format(self, address: IPAddress | None) -> str | None:
        if address is None:
            return None
        return str(truncate_ip(address) if self._truncate else address)

    def _resolve_chain(
        self, peer: str, single: tuple[str | None, ...], values: tuple[str, ...]
    ) -> str | None:
        for value in single:
            address = parse_ip(value)
            if address is not None:
                return self._format(address)
        if self._chain == "Forwarded":
            chain = _forwarded(values, "for")
        else:
            chain = [part for header in values for part in header.split(",")]
        addresses = [address for hop in chain if (address := parse_ip(hop)) is not None]
        for address in reversed(addresses):
            if not self._check_trusted(address):
                return self._format(address)
        # Every hop is one of ours: the leftmost is the client (e.g. an office behind the VPN).
        return self._format(addresses[0] if addresses else parse_ip(peer))

    def scheme(self, peer: str | None, headers: CIMultiDictProxy[str], own: str) -> str:
        """`https` or `http` as the visitor's browser used it."""
        if self.trusts(peer):
            if self._chain == "Forwarded":
                forwarded = _forwarded(headers.getall("Forwarded", ()), "proto")
                claimed = forwarded[-1] if forwarded else ""
            else:
                claimed = headers.get("X-Forwarded-Proto", "")
            claimed = claimed.split(",")[-1].strip().lower()
            if claimed in ("http", "https"):
                return claimed
        return own

    def host(self, peer: str | None, headers: CIMultiDictProxy[str], own: str) -> str:
        """The host name the visitor's browser asked for (no port)."""
        host = own
        if self.trusts(peer):
            if self._chain == "Forwarded":
                forwarded = _forwarded(headers.getall("Forwarded", ()), "host")
                claimed = forwarded[-1] if forwarded else ""
            else:
                claimed = headers.get("X-Forwarded-Host", "")
            host = claimed.split(",")[-1].strip() or own
        return _strip_port(host)


@lru_cache(maxsize=4096)
def _private_peer(peer: str | None) -> bool:
    """A private address other than this machine's (cached: `is_private` walks a table)."""
    address = parse_ip(peer)
    return address is not None and address.is_private and not address.is_loopback


def _strip_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host.rstrip(".")
