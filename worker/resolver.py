"""Host name resolution for webhook URLs: the system resolver, or a hosts file and nothing else."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Protocol

from handoff.settings import Settings
from worker.errors import DestinationUnresolvable


class Resolver(Protocol):
    """Turns a host name into the IP addresses a webhook request may connect to."""

    def resolve(self, host: str, port: int) -> list[str]:
        """Return the IP address strings of `host`, in preference order.

        Raises:
            DestinationUnresolvable: the host has no address.
        """
        ...


def _normalize(host: str) -> str:
    return host.rstrip(".").lower()


class HostsFileResolver:
    """Resolves names from a hosts-format file only, so no DNS query is ever sent.

    Each line is `ADDRESS NAME...`; `#` starts a comment. A name on several lines gets the
    addresses in file order. The file is read on every call, so edits apply at once.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def resolve(self, host: str, port: int) -> list[str]:
        """Return the addresses the file gives `host`; `port` is not used.

        Raises:
            DestinationUnresolvable: the file does not name `host`, or cannot be read.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise DestinationUnresolvable(host) from error

        wanted = _normalize(host)
        addresses: list[str] = []
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) < 2:
                continue
            try:
                address = str(ipaddress.ip_address(fields[0]))
            except ValueError:
                continue
            names = {_normalize(name) for name in fields[1:]}
            if wanted in names and address not in addresses:
                addresses.append(address)
        if not addresses:
            raise DestinationUnresolvable(host)
        return addresses


class SystemResolver:
    """Resolves names with `socket.getaddrinfo`, as the operating system is configured."""

    def resolve(self, host: str, port: int) -> list[str]:
        """Return the TCP addresses of `host` in the order `getaddrinfo` gives them.

        Raises:
            DestinationUnresolvable: the lookup failed or gave no address.
        """
        # NOTE: getaddrinfo takes no timeout, so a slow DNS server can hold the calling
        # thread past the attempt deadline. Only the system resolver's own timeouts bound it.
        try:
            results = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise DestinationUnresolvable(host) from error
        addresses: list[str] = []
        for family, _, _, _, sockaddr in results:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise DestinationUnresolvable(host)
        return addresses


def resolver_from_settings(settings: Settings) -> Resolver:
    """Return the resolver the settings ask for: the hosts file when one is set."""
    if settings.resolver_hosts_path is not None:
        return HostsFileResolver(settings.resolver_hosts_path)
    return SystemResolver()
