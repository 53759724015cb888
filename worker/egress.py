"""Egress check of webhook URLs: https only, no credentials, public addresses however spelled."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

from worker.errors import CREDENTIALS_MESSAGE, DestinationNotAllowed, DestinationUnresolvable
from worker.resolver import Resolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"https": 443, "http": 80}

# A host made only of one to four decimal, octal or hex numbers separated by dots.
# To inet_aton, and so to many HTTP clients and proxies, `2130706433`, `0x7f000001`,
# `0177.0.0.1` and `127.1` all mean 127.0.0.1.
_NUMERIC_HOST = re.compile(r"(0[xX][0-9a-fA-F]*|[0-9]+)(\.(0[xX][0-9a-fA-F]*|[0-9]+)){0,3}\.?")

# Ranges that are not globally routable but that `ipaddress` (Python 3.11) counts as global
# or does not flag consistently across patch releases.
_NOT_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast, deprecated
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast included
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


@dataclass(frozen=True)
class Destination:
    """A webhook URL that passed the egress check, with the addresses that were checked."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: list[str]


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Read a numeric IPv4 spelling as inet_aton does; None when `host` is not numeric.

    Raises:
        DestinationNotAllowed: `host` is numeric but no valid address (`256.1.1.1`, `08.1`),
            so it must not be passed on to a resolver as if it were a name.
    """
    if not _NUMERIC_HOST.fullmatch(host):
        return None
    try:
        packed = socket.inet_aton(host.rstrip("."))
    except OSError as error:
        raise DestinationNotAllowed() from error
    return ipaddress.IPv4Address(packed)


def parse_ip_literal(host: str) -> IPAddress | None:
    """Parse `host` as an IP address in any spelling; None when it is a name.

    Accepts IPv6 with or without brackets and every IPv4 spelling inet_aton accepts.

    Raises:
        DestinationNotAllowed: `host` is numeric but no valid address.
    """
    candidate = host.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    return _numeric_ipv4(candidate)


def _is_public_ipv4(address: ipaddress.IPv4Address) -> bool:
    if (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return False
    if any(address in network for network in _NOT_PUBLIC_V4):
        return False
    return address.is_global


def _is_public_ipv6(address: ipaddress.IPv6Address) -> bool:
    # Forms that carry an IPv4 address are judged by that address, because the packets end
    # up there: ::ffff:127.0.0.1 is a connection to 127.0.0.1 on a dual-stack socket.
    if address.ipv4_mapped is not None:
        return _is_public_ipv4(address.ipv4_mapped)
    if address in _IPV4_TRANSLATED or address in _NAT64:
        return _is_public_ipv4(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        return _is_public_ipv4(address.sixtofour)
    # Teredo tunnels and local-use NAT64 reach addresses this check cannot see, and the
    # IPv4-compatible form (::a.b.c.d) is deprecated and not routable.
    if address.teredo is not None or address in _NAT64_LOCAL or address in _IPV4_COMPATIBLE:
        return False
    if (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_site_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return False
    return address.is_global


def is_public_address(address: str) -> bool:
    """Tell whether `address` is a globally routable IP address, however it is spelled.

    False for loopback, private, link-local (cloud metadata 169.254.169.254 included),
    carrier-grade NAT, multicast, reserved, unspecified and broadcast addresses, unique-local
    and site-local IPv6, and for IPv6 forms that embed a non-public IPv4 (mapped, translated,
    NAT64, 6to4). Numeric IPv4 spellings such as `2130706433`, `0x7f000001`, `0177.0.0.1` or
    `127.1` are read as the address they mean. Anything that is not an address is False.
    """
    try:
        parsed = parse_ip_literal(address)
    except DestinationNotAllowed:
        return False
    if parsed is None:
        return False
    if isinstance(parsed, ipaddress.IPv4Address):
        return _is_public_ipv4(parsed)
    return _is_public_ipv6(parsed)


def check_url(url: str | httpx.URL, *, allow_private: bool) -> tuple[str, str, int]:
    """Check the form of a webhook URL, without resolving its host.

    The URL is parsed the way httpx parses it, so the host checked here is the host the
    request goes to.

    Args:
        url: the webhook URL.
        allow_private: accept plain `http` as well as `https`.

    Returns:
        The scheme, the host in ASCII (IDNA) form without brackets, and the port.

    Raises:
        DestinationNotAllowed: the URL is invalid, its scheme is not allowed, it contains
            credentials, or it has no host or an invalid port.
    """
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except httpx.InvalidURL as error:
        raise DestinationNotAllowed("destination not allowed: the URL is invalid") from error

    scheme = parsed.scheme
    if scheme != "https" and not (scheme == "http" and allow_private):
        raise DestinationNotAllowed()
    if parsed.userinfo:
        raise DestinationNotAllowed(CREDENTIALS_MESSAGE)

    host = parsed.raw_host.decode("ascii")
    if not host:
        raise DestinationNotAllowed("destination not allowed: the URL has no host")
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    if not (1 <= port <= 65535):
        raise DestinationNotAllowed(f"destination not allowed: invalid port {port}")
    return scheme, host, port


def resolve_addresses(host: str, port: int, resolver: Resolver) -> list[str]:
    """Return the addresses of `host`: itself when it is an IP literal, else the resolver's.

    Resolver results that are not IP addresses are dropped, and duplicates removed.

    Raises:
        DestinationNotAllowed: `host` is numeric but no valid address.
        DestinationUnresolvable: the resolver found no address.
    """
    literal = parse_ip_literal(host)
    if literal is not None:
        return [str(literal)]

    # Only IP addresses go on: a name here would make socket.connect resolve it again,
    # unchecked.
    addresses: list[str] = []
    for result in resolver.resolve(host, port):
        try:
            address = str(ipaddress.ip_address(result))
        except ValueError:
            continue
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationUnresolvable(host)
    return addresses


def check_addresses(addresses: list[str]) -> None:
    """Raise `DestinationNotAllowed` unless every address is public.

    The message stays generic, because naming the address would reveal the internal
    network to the admin saving the URL.
    """
    if not all(is_public_address(address) for address in addresses):
        raise DestinationNotAllowed()


def check_destination(url: str, *, allow_private: bool, resolver: Resolver) -> Destination:
    """Check a webhook URL and the addresses its host resolves to.

    Args:
        url: the webhook URL.
        allow_private: accept `http` and non-public addresses (development only).
        resolver: resolves the host when it is a name; IP literals never reach it.

    Returns:
        The destination with the addresses that were checked.

    Raises:
        DestinationNotAllowed: the URL's form is not allowed (see `check_url`), or an
            address is not public while `allow_private` is False.
        DestinationUnresolvable: the host did not resolve.
    """
    scheme, host, port = check_url(url, allow_private=allow_private)

    addresses = resolve_addresses(host, port, resolver)
    if not allow_private:
        check_addresses(addresses)

    return Destination(url=url, scheme=scheme, host=host, port=port, addresses=addresses)
