import pytest
from hypothesis import given, settings, strategies as st
from mitmproxy.http import Headers

from teamclaude import gate, rewrite

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


@pytest.mark.parametrize("target, normalized", [
    ("/v1/messages", "/v1/messages"),
    ("/v1/messages?beta=true", "/v1/messages?beta=true"),
    ("/api/oauth/../../v1/messages", "/v1/messages"),
    ("/api/oauth/%2e%2e/%2E%2e/v1/messages", "/v1/messages"),
    ("/api/oauth/.%2E/%2e./v1/messages", "/v1/messages"),
    ("/v1/code/../messages", "/v1/messages"),
    ("//v1/messages", "/v1/messages"),
    ("/v1/./messages/", "/v1/messages/"),
    ("/v1/m%65ssages", "/v1/messages"),
    ("/api/oauth/profile?x=%2e%2e/..", "/api/oauth/profile?x=%2e%2e/.."),  # the query is not a path
    ("/v1/files/a%20b", "/v1/files/a%20b"),
    ("/v1/files/a%3ab", "/v1/files/a%3Ab"),
])
def test_paths_are_normalized_before_anything_is_decided(target, normalized):
    assert gate.normalize_target(target) == normalized


@pytest.mark.parametrize("target", [
    "/api\\oauth/../../v1/messages", "/api/oauth%2f..%2f..%2fv1/messages", "/api/oauth/%5c..", "/v1/%zz",
    "/../v1/messages", "/v1/../../messages", "v1/messages", "/v1/mess ages", "/v1/\x00",
])
def test_paths_that_cannot_be_normalized_unambiguously_are_refused(target):
    with pytest.raises(gate.BadPath):
        gate.normalize_target(target)


@pytest.mark.parametrize("value", [f"Bearer {KEY}", f"Bearer  {KEY}", f"Bearer\t{KEY}", f"bearer {KEY} ", f" BEARER \t{KEY}"])
def test_bearer_forms_accepted_as_the_key_are_the_ones_stripped(value):
    h = headers(("authorization", value), ("x-other", "1"))
    assert gate.key_matches(h, KEY)
    rewrite.strip_proxy_key(h, KEY)
    assert list(h.items()) == [("x-other", "1")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["authorization", "Authorization", "x-api-key", "X-Api-Key", "x-teamclaude-key", "x-other"]),
    st.one_of(st.just(KEY), st.builds(lambda pre, scheme, mid, post: f"{pre}{scheme}{mid}{KEY}{post}",
                                      st.sampled_from(["", " ", "\t"]), st.sampled_from(["Bearer", "bearer", "Basic", "Bearer" + KEY]),
                                      st.sampled_from([" ", "  ", "\t", " \t", ""]), st.sampled_from(["", " ", "x", "\t"])),
              st.text(alphabet=" \tBearbcdk-", max_size=12)),
), max_size=5))
def test_acceptance_and_stripping_share_one_notion_of_a_match(pairs):
    h = headers(*pairs)
    accepted = gate.key_matches(h, KEY)
    rewrite.strip_proxy_key(h, KEY)
    left = list(h.fields)
    # After stripping, nothing that was accepted as the key is left.
    assert not gate.key_matches(h, KEY)
    if accepted:
        assert len(left) < len(pairs)
