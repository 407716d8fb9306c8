import base64

import pytest
from hypothesis import given, settings, strategies as st
from mitmproxy.http import Headers

from teamclaude import gate, rewrite
from teamclaude.client_keys import ClientKey, Keyring, key_hash

KEY = "tc-proxy-key-0123456789"
KEYS = Keyring(KEY)
CLIENT_KEY = "tck-client-key-0123456789abcdefghijkl"  # fixed: test ids must be the same in every worker
CLIENT = ClientKey("alice", key_hash(CLIENT_KEY), 0)
WITH_CLIENT = Keyring(KEY, [CLIENT])


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
    assert gate.key_matches(headers(("X-TeamClaude-Key", KEY)), KEYS)
    assert gate.key_matches(headers(("x-api-key", f" {KEY} ")), KEYS)
    assert gate.key_matches(headers(("authorization", "Bearer client-token"), ("x-teamclaude-key", KEY)), KEYS)
    assert gate.key_matches(headers(("Authorization", f"bearer {KEY}")), KEYS)
    assert not gate.key_matches(headers(("authorization", f"Basic {KEY}")), KEYS)
    assert not gate.key_matches(headers(("x-teamclaude-key", "wrong")), KEYS)
    assert not gate.key_matches(headers(("x-teamclaude-key", "")), Keyring(""))
    assert gate.key_matches({"x-teamclaude-key": KEY}, KEYS)


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
    assert gate.key_matches(h, KEYS)
    rewrite.strip_proxy_key(h, KEYS)
    assert list(h.items()) == [("x-other", "1")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["authorization", "Authorization", "x-api-key", "X-Api-Key", "x-teamclaude-key", "x-other"]),
    st.one_of(st.sampled_from([KEY, CLIENT_KEY]),
              st.builds(lambda pre, scheme, mid, key, post: f"{pre}{scheme}{mid}{key}{post}",
                        st.sampled_from(["", " ", "\t"]), st.sampled_from(["Bearer", "bearer", "Basic", "Bearer" + KEY]),
                        st.sampled_from([" ", "  ", "\t", " \t", ""]), st.sampled_from([KEY, CLIENT_KEY]),
                        st.sampled_from(["", " ", "x", "\t"])),
              st.text(alphabet=" \tBearbcdk-", max_size=12)),
), max_size=5))
def test_acceptance_and_stripping_share_one_notion_of_a_match(pairs):
    h = headers(*pairs)
    accepted = gate.key_matches(h, WITH_CLIENT)
    rewrite.strip_proxy_key(h, WITH_CLIENT)
    left = list(h.fields)
    # After stripping, nothing that was accepted as a key is left.
    assert not gate.key_matches(h, WITH_CLIENT)
    if accepted:
        assert len(left) < len(pairs)


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"teamclaude:{password}".encode()).decode()


@pytest.mark.parametrize("name, value", [
    ("x-teamclaude-key", CLIENT_KEY), ("x-api-key", CLIENT_KEY), ("Authorization", f"Bearer {CLIENT_KEY}"),
    ("proxy-authorization", f"Bearer {CLIENT_KEY}"), ("proxy-authorization", _basic(CLIENT_KEY)),
])
def test_a_client_key_is_accepted_and_stripped_wherever_the_proxy_key_is(name, value):
    h = headers((name, value), ("x-other", "1"))
    holder = gate.key_holder(h, WITH_CLIENT)
    assert holder is not None and holder.name == "alice"
    assert gate.key_matches(h, WITH_CLIENT) and not gate.key_matches(h, KEYS)
    rewrite.strip_proxy_key(h, WITH_CLIENT)
    assert list(h.items()) == [("x-other", "1")]


def test_the_proxy_key_has_no_client_name_and_a_client_key_beside_it_names_the_client():
    assert gate.key_holder(headers(("x-teamclaude-key", KEY)), WITH_CLIENT).name is None
    both = headers(("authorization", f"Bearer {KEY}"), ("x-teamclaude-key", CLIENT_KEY))
    assert gate.key_holder(both, WITH_CLIENT).name == "alice"
    assert gate.key_holder(headers(("x-teamclaude-key", CLIENT_KEY + "x")), WITH_CLIENT) is None
    assert gate.key_holder(headers(("x-teamclaude-key", CLIENT.sha256)), WITH_CLIENT) is None  # the hash is no key
