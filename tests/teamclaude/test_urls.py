"""Host and port to URL and back, IPv6 included (the Deck reads what the addon wrote)."""

import pytest

from teamclaude.urls import connect_host, http_url, split_host_port


@pytest.mark.parametrize(("host", "port", "url"), [
    ("127.0.0.1", 3456, "http://127.0.0.1:3456"),
    ("localhost", 80, "http://localhost:80"),
    ("::1", 3456, "http://[::1]:3456"),
    ("[::1]", 3456, "http://[::1]:3456"),
    ("fe80::1%eth0", 9, "http://[fe80::1%eth0]:9"),
    ("::", None, "http://[::]"),
])
def test_http_url_brackets_ipv6_hosts(host, port, url):
    assert http_url(host, port) == url


@pytest.mark.parametrize(("host", "reached"), [
    ("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "::1"), ("[::]", "::1"),
    ("::1", "::1"), ("192.0.2.7", "192.0.2.7"),
])
def test_connect_host_reaches_wildcards_through_loopback(host, reached):
    assert connect_host(host) == reached


@pytest.mark.parametrize(("address", "parts"), [
    ("http://127.0.0.1:3456", ("127.0.0.1", 3456)),
    ("127.0.0.1:9000", ("127.0.0.1", 9000)),
    ("http://[::1]:3456/", ("::1", 3456)),
    ("http://[::]:3456", ("::", 3456)),
    ("http://:::3456", ("::", 3456)),  # written unbracketed by earlier versions
    ("http://::1:3456", ("::1", 3456)),
    ("http://localhost", ("localhost", None)),
    ("http://[::1]", ("::1", None)),
    ("http://host:notaport", ("host", None)),
])
def test_split_host_port_reads_bracketed_and_unbracketed_ipv6(address, parts):
    assert split_host_port(address) == parts


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "fe80::1%eth0", "example.com"])
def test_split_reads_back_what_http_url_writes(host):
    assert split_host_port(http_url(host, 3456)) == (host, 3456)
