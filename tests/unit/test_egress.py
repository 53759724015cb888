"""Unit tests of the egress check and the resolvers; no test here opens a connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handoff.settings import Settings
from worker.egress import Destination, check_destination, is_public_address, parse_ip_literal
from worker.errors import (
    CREDENTIALS_MESSAGE,
    NOT_ALLOWED_MESSAGE,
    DeliveryError,
    DestinationNotAllowed,
    DestinationUnresolvable,
)
from worker.resolver import HostsFileResolver, SystemResolver, resolver_from_settings


class StubResolver:
    """Resolver that returns addresses from a dict and records every lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[tuple[str, int]] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        if host not in self.answers:
            raise DestinationUnresolvable(host)
        return self.answers[host]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that would send a DNS query or open a connection."""

    def fail_network_use(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network use attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", fail_network_use)
    monkeypatch.setattr(socket, "create_connection", fail_network_use)
    monkeypatch.setattr(socket.socket, "connect", fail_network_use)
    yield


# At least 25 spellings, each with whether it is a public address.
ADDRESS_TABLE = [
    ("8.8.8.8", True),
    ("1.1.1.1", True),
    ("2606:4700:4700::1111", True),
    ("[2606:4700:4700::1111]", True),
    ("::ffff:8.8.8.8", True),
    ("64:ff9b::8.8.8.8", True),
    ("2002:808:808::1", True),
    ("134744072", True),  # 8.8.8.8 in decimal
    ("127.0.0.1", False),
    ("127.255.255.254", False),
    ("2130706433", False),  # 127.0.0.1 in decimal
    ("0x7f000001", False),
    ("0x7F.0.0.1", False),
    ("0177.0.0.1", False),
    ("0177.1", False),
    ("127.1", False),
    ("127.0.0.1.", False),
    ("0", False),
    ("0.0.0.0", False),  # noqa: S104 - an address under test, nothing binds to it
    ("10.0.0.1", False),
    ("10.255.255.255", False),
    ("172.16.0.1", False),
    ("172.31.255.255", False),
    ("192.168.1.1", False),
    ("3232235777", False),  # 192.168.1.1 in decimal
    ("169.254.169.254", False),  # cloud metadata
    ("0xa9fea9fe", False),  # 169.254.169.254 in hex
    ("100.64.0.1", False),
    ("100.127.255.255", False),
    ("192.0.0.8", False),
    ("192.0.2.10", False),
    ("198.18.0.1", False),
    ("198.51.100.7", False),
    ("203.0.113.9", False),
    ("224.0.0.1", False),
    ("239.255.255.250", False),
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    ("::1", False),
    ("[::1]", False),
    ("0:0:0:0:0:0:0:1", False),
    ("::", False),
    ("fe80::1", False),
    ("fe80::1%eth0", False),
    ("fc00::1", False),
    ("fd12:3456:789a::1", False),
    ("fec0::1", False),
    ("ff02::1", False),
    ("::ffff:127.0.0.1", False),
    ("::ffff:7f00:1", False),
    ("::ffff:169.254.169.254", False),
    ("::ffff:10.0.0.1", False),
    ("::ffff:0:127.0.0.1", False),  # IPv4-translated
    ("::127.0.0.1", False),  # IPv4-compatible
    ("::8.8.8.8", False),  # IPv4-compatible, deprecated even when public
    ("64:ff9b::127.0.0.1", False),
    ("64:ff9b::a9fe:a9fe", False),
    ("64:ff9b:1::8.8.8.8", False),  # local-use NAT64
    ("2002:7f00:1::1", False),  # 6to4 around 127.0.0.1
    ("2002:a9fe:a9fe::", False),
    ("2002:c0a8:101::1", False),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ("2001:db8::1", False),  # documentation
    ("256.1.1.1", False),
    ("08.0.0.1", False),
    ("4294967296", False),
    ("localhost", False),
    ("example.com", False),
    ("", False),
    ("1.2.3.4 x", False),
]


@pytest.mark.parametrize(("address", "expected"), ADDRESS_TABLE)
def test_is_public_address(address: str, expected: bool) -> None:
    assert expected is is_public_address(address)


def test_address_table_is_large() -> None:
    assert len(ADDRESS_TABLE) >= 25


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("example.com", None),
        ("cafe.beef", None),
        ("123.com", None),
    ],
)
def test_parse_ip_literal(host: str, expected: str | None) -> None:
    parsed = parse_ip_literal(host)
    assert expected == (None if parsed is None else str(parsed))


def test_parse_ip_literal_rejects_invalid_numeric_host() -> None:
    with pytest.raises(DestinationNotAllowed):
        parse_ip_literal("256.0.0.1")


def test_public_https_url_allowed() -> None:
    resolver = StubResolver({"hooks.example.com": ["93.184.215.14"]})
    destination = check_destination(
        "https://hooks.example.com/hooks/catch/1/abc", allow_private=False, resolver=resolver
    )
    expected = Destination(
        url="https://hooks.example.com/hooks/catch/1/abc",
        scheme="https",
        host="hooks.example.com",
        port=443,
        addresses=["93.184.215.14"],
    )
    assert expected == destination
    assert [("hooks.example.com", 443)] == resolver.lookups


def test_explicit_port_passed_to_resolver() -> None:
    resolver = StubResolver({"hooks.example.com": ["93.184.215.14"]})
    destination = check_destination(
        "https://hooks.example.com:8443/x", allow_private=False, resolver=resolver
    )
    assert 8443 == destination.port
    assert [("hooks.example.com", 8443)] == resolver.lookups


def test_http_rejected_without_allow_private() -> None:
    resolver = StubResolver({"hooks.example.com": ["93.184.215.14"]})
    with pytest.raises(DestinationNotAllowed) as caught:
        check_destination("http://hooks.example.com/x", allow_private=False, resolver=resolver)
    assert NOT_ALLOWED_MESSAGE == str(caught.value)
    assert [] == resolver.lookups


def test_http_allowed_with_allow_private() -> None:
    resolver = StubResolver({"receiver.test": ["127.0.0.1"]})
    destination = check_destination("http://receiver.test/x", allow_private=True, resolver=resolver)
    assert "http" == destination.scheme
    assert 80 == destination.port
    assert ["127.0.0.1"] == destination.addresses


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example.com/x", "file:///etc/passwd", "gopher://hooks.example.com/", "ws://h.io"],
)
def test_other_schemes_rejected(url: str) -> None:
    with pytest.raises(DestinationNotAllowed):
        check_destination(url, allow_private=True, resolver=StubResolver({}))


@pytest.mark.parametrize(
    "url",
    [
        "https://user:password@hooks.example.com/x",
        "https://token@hooks.example.com/x",
        "https://:password@hooks.example.com/x",
        "https://hooks.example.com\\@93.184.215.14/x",
    ],
)
def test_credentials_rejected_with_hint(url: str) -> None:
    resolver = StubResolver({"hooks.example.com": ["93.184.215.14"]})
    with pytest.raises(DestinationNotAllowed) as caught:
        check_destination(url, allow_private=True, resolver=resolver)
    assert CREDENTIALS_MESSAGE == str(caught.value)
    assert "use the signing secret" in str(caught.value)


@pytest.mark.parametrize("url", ["https:///x", "https://:443/x", "https://", "not a url"])
def test_missing_host_rejected(url: str) -> None:
    with pytest.raises(DestinationNotAllowed):
        check_destination(url, allow_private=True, resolver=StubResolver({}))


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com:0/", "https://hooks.example.com:99999/"]
)
def test_invalid_port_rejected(url: str) -> None:
    resolver = StubResolver({"hooks.example.com": ["93.184.215.14"]})
    with pytest.raises(DestinationNotAllowed):
        check_destination(url, allow_private=True, resolver=resolver)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://2130706433/x",
        "https://0x7f000001/x",
        "https://127.1/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:169.254.169.254]/x",
        "https://[fd00::1]/x",
        "https://10.0.0.1:8443/x",
    ],
)
def test_private_literal_rejected_without_resolver(url: str) -> None:
    resolver = StubResolver({})
    with pytest.raises(DestinationNotAllowed) as caught:
        check_destination(url, allow_private=False, resolver=resolver)
    assert [] == resolver.lookups
    assert NOT_ALLOWED_MESSAGE == str(caught.value)


def test_octal_literal_rejected_as_invalid_url() -> None:
    # httpx refuses a leading-zero dotted quad outright, so it never reaches a resolver.
    resolver = StubResolver({})
    with pytest.raises(DestinationNotAllowed) as caught:
        check_destination("https://0177.0.0.1/x", allow_private=True, resolver=resolver)
    assert "destination not allowed: the URL is invalid" == str(caught.value)
    assert [] == resolver.lookups


def test_literal_never_reaches_resolver() -> None:
    resolver = StubResolver({})
    destination = check_destination("https://8.8.8.8/x", allow_private=False, resolver=resolver)
    assert ["8.8.8.8"] == destination.addresses
    assert [] == resolver.lookups


def test_decimal_literal_normalized() -> None:
    destination = check_destination(
        "https://134744072/x", allow_private=False, resolver=StubResolver({})
    )
    assert ["8.8.8.8"] == destination.addresses


def test_name_resolving_to_private_rejected_generically() -> None:
    resolver = StubResolver({"internal.example.com": ["10.1.2.3"]})
    with pytest.raises(DestinationNotAllowed) as caught:
        check_destination("https://internal.example.com/", allow_private=False, resolver=resolver)
    assert NOT_ALLOWED_MESSAGE == str(caught.value)
    assert "10.1.2.3" not in str(caught.value)


def test_any_private_address_rejects_name() -> None:
    resolver = StubResolver({"mixed.example.com": ["93.184.215.14", "169.254.169.254"]})
    with pytest.raises(DestinationNotAllowed):
        check_destination("https://mixed.example.com/", allow_private=False, resolver=resolver)


def test_private_address_allowed_with_allow_private() -> None:
    resolver = StubResolver({"internal.example.com": ["10.1.2.3"]})
    destination = check_destination(
        "https://internal.example.com/", allow_private=True, resolver=resolver
    )
    assert ["10.1.2.3"] == destination.addresses


def test_unresolvable_host_raises() -> None:
    with pytest.raises(DestinationUnresolvable) as caught:
        check_destination(
            "https://nowhere.example.com/", allow_private=False, resolver=StubResolver({})
        )
    assert "destination unresolvable: host nowhere.example.com did not resolve" == str(caught.value)
    assert "nowhere.example.com" == caught.value.host


def test_resolver_answers_normalized() -> None:
    resolver = StubResolver(
        {"odd.example.com": ["2606:4700:0:0:0:0:0:1111", "not-an-ip", "2606:4700::1111"]}
    )
    destination = check_destination(
        "https://odd.example.com/", allow_private=False, resolver=resolver
    )
    assert ["2606:4700::1111"] == destination.addresses


def test_only_names_from_resolver_unresolvable() -> None:
    resolver = StubResolver({"alias.example.com": ["other.example.com"]})
    with pytest.raises(DestinationUnresolvable):
        check_destination("https://alias.example.com/", allow_private=True, resolver=resolver)


def test_empty_answer_is_unresolvable() -> None:
    resolver = StubResolver({"empty.example.com": []})
    with pytest.raises(DestinationUnresolvable):
        check_destination("https://empty.example.com/", allow_private=False, resolver=resolver)


def test_idna_host_resolved_in_ascii() -> None:
    resolver = StubResolver({"xn--bcher-kva.example": ["93.184.215.14"]})
    destination = check_destination(
        "https://bücher.example/x", allow_private=False, resolver=resolver
    )
    assert "xn--bcher-kva.example" == destination.host


def test_errors_share_root() -> None:
    assert issubclass(DestinationNotAllowed, DeliveryError)
    assert issubclass(DestinationUnresolvable, DeliveryError)


def write_hosts(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts"
    path.write_text(text, encoding="utf-8")
    return path


def test_hosts_file_resolves_names(tmp_path: Path) -> None:
    path = write_hosts(
        tmp_path,
        "# test hosts\n"
        "127.0.0.1   receiver.test other.test  # trailing comment\n"
        "\n"
        "::1 receiver.test\n"
        "not-an-address broken.test\n"
        "93.184.215.14 Public.Example.COM\n",
    )
    resolver = HostsFileResolver(path)
    assert ["127.0.0.1", "::1"] == resolver.resolve("receiver.test", 80)
    assert ["127.0.0.1"] == resolver.resolve("other.test", 80)
    assert ["93.184.215.14"] == resolver.resolve("public.example.com.", 443)


def test_hosts_file_missing_name_unresolvable(tmp_path: Path) -> None:
    resolver = HostsFileResolver(write_hosts(tmp_path, "127.0.0.1 receiver.test\n"))
    for host in ("missing.test", "broken.test", "trailing"):
        with pytest.raises(DestinationUnresolvable):
            resolver.resolve(host, 443)


def test_hosts_file_comment_lines_ignored(tmp_path: Path) -> None:
    resolver = HostsFileResolver(write_hosts(tmp_path, "# 127.0.0.1 commented.test\n"))
    with pytest.raises(DestinationUnresolvable):
        resolver.resolve("commented.test", 443)


def test_hosts_file_missing_file_unresolvable(tmp_path: Path) -> None:
    resolver = HostsFileResolver(tmp_path / "absent")
    with pytest.raises(DestinationUnresolvable):
        resolver.resolve("receiver.test", 443)


def test_hosts_file_read_on_each_lookup(tmp_path: Path) -> None:
    path = write_hosts(tmp_path, "127.0.0.1 receiver.test\n")
    resolver = HostsFileResolver(path)
    path.write_text("::1 receiver.test\n", encoding="utf-8")
    assert ["::1"] == resolver.resolve("receiver.test", 443)


def test_check_destination_with_hosts_file(tmp_path: Path) -> None:
    path = write_hosts(tmp_path, "127.0.0.1 receiver.test\n93.184.215.14 hooks.example.com\n")
    resolver = HostsFileResolver(path)
    allowed = check_destination(
        "https://hooks.example.com/", allow_private=False, resolver=resolver
    )
    assert ["93.184.215.14"] == allowed.addresses
    with pytest.raises(DestinationNotAllowed):
        check_destination("https://receiver.test/", allow_private=False, resolver=resolver)
    with pytest.raises(DestinationUnresolvable):
        check_destination("https://missing.test/", allow_private=False, resolver=resolver)


def test_resolver_from_settings(tmp_path: Path) -> None:
    path = write_hosts(tmp_path, "127.0.0.1 receiver.test\n")
    with_hosts = Settings(
        database_url=None, broker_url=None, secret_key=None, resolver_hosts_path=path
    )
    without_hosts = Settings(database_url=None, broker_url=None, secret_key=None)
    resolver = resolver_from_settings(with_hosts)
    assert isinstance(resolver, HostsFileResolver)
    assert path == resolver.path
    assert isinstance(resolver_from_settings(without_hosts), SystemResolver)


def test_system_resolver_maps_failure_to_unresolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(DestinationUnresolvable):
        SystemResolver().resolve("nowhere.test", 443)


def test_system_resolver_keeps_order_without_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:4700::1", 443, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    assert ["2606:4700::1", "93.184.215.14"] == SystemResolver().resolve("example.test", 443)
