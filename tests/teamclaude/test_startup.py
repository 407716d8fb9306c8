"""Where the proxy listens (teamclaude.startup.plan): pure, no mitmproxy running."""

from __future__ import annotations

import pytest

from teamclaude.startup import ModeRefused, plan

UPSTREAM = "https://api.anthropic.com"


def modes(given, *, listen_host="127.0.0.1", port=3456, option="", web_without_token=False):
    return plan(given, upstream=UPSTREAM, listen_host=listen_host, port=port,
                listen_host_option=option, web_without_token=web_without_token)


def test_no_mode_is_a_reverse_proxy_on_the_configured_address():
    listen = modes(["regular"])
    assert listen.modes == (f"reverse:{UPSTREAM}@127.0.0.1:3456",) and listen.reverse
    assert listen.changes(["regular"])


def test_an_ipv6_listen_host_is_written_the_way_mitmproxy_parses_it():
    assert modes(["regular"], listen_host="::1").modes == (f"reverse:{UPSTREAM}@::1:3456",)


@pytest.mark.parametrize(("given", "wanted"), [
    (["regular@3457"], ("regular@127.0.0.1:3457",)),
    (["socks5"], ("socks5@127.0.0.1:1080",)),
    (["upstream:http://corp:3128@9000"], ("upstream:http://corp:3128@127.0.0.1:9000",)),
    (["regular@0.0.0.0:3457"], ("regular@0.0.0.0:3457",)),  # the user named an address
    ([f"reverse:{UPSTREAM}@4000"], (f"reverse:{UPSTREAM}@127.0.0.1:4000",)),
    (["local"], ("local",)),  # no listener of its own
])
def test_a_mode_without_an_address_listens_on_loopback(given, wanted):
    assert modes(given).modes == wanted


def test_mitmproxys_listen_host_option_names_the_address():
    assert not modes(["regular@3457"], option="0.0.0.0").changes(["regular@3457"])


def test_mitmweb_without_an_api_token_refuses_forward_modes_and_says_why():
    with pytest.raises(ModeRefused, match="CVE-2025-23217"):
        modes(["regular@3457"], web_without_token=True)
    assert modes(["regular"], web_without_token=True).reverse
    assert modes([f"reverse:{UPSTREAM}@4000"], web_without_token=True).reverse
