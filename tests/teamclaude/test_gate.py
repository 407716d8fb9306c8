from hypothesis import given, settings, strategies as st
from mitmproxy.http import Headers

from teamclaude import gate

KEY = "tc-proxy-key-0123456789"


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers([(name.encode(), value.encode()) for name, value in pairs])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["Origin", "origin", "x-api-key", "Authorization", "host", "X-TEAMCLAUDE-KEY"]),
    st.binary(max_size=6).filter(lambda b: b"\r" not in b and b"\n" not in b),
), max_size=8))
def test_one_pass_values_match_mitmproxy_lookups(pairs):
    h = Headers([(name.encode(), value) for name, value in pairs])
    names = ("origin", "x-api-key", "authorization", "x-teamclaude-key", "absent")
    assert gate.header_values(h, names) == {name: h[name] for name in names if name in h}


def test_plain_mappings_are_asked_by_name():
    assert gate.header_values({"origin": "https://x"}, ("origin", "sec-fetch-site")) == {"origin": "https://x"}


def test_browser_requests_are_recognised():
    assert gate.is_browser_request(headers(("Origin", "https://evil.example")))
    assert gate.is_browser_request(headers(("Sec-Fetch-Site", " Cross-Site ")))
    assert not gate.is_browser_request(headers(("sec-fetch-site", "none"), ("host", "x")))
    assert not gate.is_browser_request({"origin": ""})


def test_key_in_any_of_its_headers_matches():
    assert gate.key_matches(headers(("X-TeamClaude-Key", KEY)), KEY)
    assert gate.key_matches(headers(("x-api-key", f" {KEY} ")), KEY)
    assert gate.key_matches(headers(("authorization", "Bearer client-token"), ("x-teamclaude-key", KEY)), KEY)
    assert gate.key_matches(headers(("Authorization", f"bearer {KEY}")), KEY)
    assert not gate.key_matches(headers(("authorization", f"Basic {KEY}")), KEY)
    assert not gate.key_matches(headers(("x-teamclaude-key", "wrong")), KEY)
    assert not gate.key_matches(headers(("x-teamclaude-key", "")), "")
    assert gate.key_matches({"x-teamclaude-key": KEY}, KEY)


def test_preconnects_are_credential_less_heads_of_two_paths():
    for method, path in (("HEAD", "/"), ("head", "/api/hello")):
        assert gate.is_preconnect(method, path)
    for method, path in (("GET", "/"), ("HEAD", "/v1/messages"), ("POST", "/api/hello"), ("HEAD", "/api/hello/x")):
        assert not gate.is_preconnect(method, path)


def test_telemetry_follows_the_setting_only_on_event_logging_paths():
    for mode in gate.TELEMETRY_MODES:
        assert gate.telemetry_action(mode, "/api/event_logging/batch") == mode
        assert gate.telemetry_action(mode, "/v1/messages") is None
        assert gate.telemetry_action(mode, "/api/event_loggingx") is None
