from hypothesis import given, settings, strategies as st
from mitmproxy.http import Headers

from teamclaude import rewrite
from teamclaude.client_keys import Keyring
from teamclaude.rewrite import OAUTH_BETA


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers([(name.encode(), value.encode()) for name, value in pairs])


# The obvious implementation through mitmproxy's mapping API (one field scan per lookup):
# the single-pass versions must leave exactly the same fields.
def reference_betas(h: Headers) -> list[str]:
    values: list[str] = []
    for header in h.get_all("anthropic-beta"):
        values.extend(part.strip() for part in header.split(",") if part.strip())
    return values


def reference_set_betas(h: Headers, values: list[str]) -> None:
    if values:
        h.set_all("anthropic-beta", [",".join(values)])
    elif "anthropic-beta" in h:
        del h["anthropic-beta"]


def reference_strip(h: Headers) -> None:
    for name in rewrite.CREDENTIAL_HEADERS:
        if name in h:
            del h[name]


def reference_oauth(h: Headers, token: str) -> None:
    reference_strip(h)
    h["authorization"] = f"Bearer {token}"
    betas = reference_betas(h)
    if OAUTH_BETA not in betas:
        betas.insert(0, OAUTH_BETA)
    reference_set_betas(h, betas)


def reference_api_key(h: Headers, key: str) -> None:
    reference_strip(h)
    h["x-api-key"] = key
    if "anthropic-beta" in h:
        reference_set_betas(h, [b for b in reference_betas(h) if b != OAUTH_BETA])


def reference_redact(h: Headers, account: str) -> None:
    for name in ("authorization", "x-api-key"):
        if name in h:
            h[name] = f"<account:{account}>"


def test_oauth_replaces_every_client_credential_and_puts_the_beta_first():
    h = headers(
        ("Host", "x"), ("Authorization", "Bearer client"), ("x-api-key", "k"), ("X-TeamClaude-Key", "p"),
        ("anthropic-beta", "a, b"), ("accept", "*/*"), ("anthropic-beta", "c"),
    )
    rewrite.apply_oauth(h, "tok")
    assert h.fields == (
        (b"Host", b"x"), (b"anthropic-beta", b"oauth-2025-04-20,a,b,c"), (b"accept", b"*/*"),
        (b"authorization", b"Bearer tok"),
    )


def test_oauth_beta_is_not_repeated_and_is_added_when_absent():
    h = headers(("anthropic-beta", f"x,{OAUTH_BETA}"))
    rewrite.apply_oauth(h, "tok")
    assert h.get_all("anthropic-beta") == [f"x,{OAUTH_BETA}"]
    bare = headers(("host", "x"))
    rewrite.apply_oauth(bare, "tok")
    assert bare.fields[-1] == (b"anthropic-beta", OAUTH_BETA.encode())


def test_api_key_drops_the_oauth_beta_and_an_emptied_beta_header():
    h = headers(("authorization", "Bearer client"), ("anthropic-beta", OAUTH_BETA), ("accept", "*/*"))
    rewrite.apply_api_key(h, "sk-key")
    assert h.fields == ((b"accept", b"*/*"), (b"x-api-key", b"sk-key"))


def test_redact_keeps_the_position_and_drops_duplicates():
    h = headers(("a", "1"), ("Authorization", "Bearer secret"), ("b", "2"), ("authorization", "Bearer again"))
    rewrite.redact_injected(h, "alice")
    assert h.fields == ((b"a", b"1"), (b"Authorization", b"<account:alice>"), (b"b", b"2"))
    untouched = headers(("a", "1"))
    rewrite.redact_injected(untouched, "alice")
    assert untouched.fields == ((b"a", b"1"),)


_names = st.sampled_from([
    "Authorization", "authorization", "x-api-key", "X-Api-Key", "x-teamclaude-key", "anthropic-beta",
    "Anthropic-Beta", "host", "accept", "x-claude-code-session-id",
])
_values = st.one_of(
    st.sampled_from(["", " ", OAUTH_BETA, f" {OAUTH_BETA} ,x", "a,,b", "Bearer t", "\u00a0y\u00a0,z"]),
    st.text(alphabet="ab, \t", max_size=8),
)
_fields = st.lists(st.tuples(_names, _values), max_size=8)


@settings(max_examples=300, deadline=None)
@given(_fields)
def test_single_pass_rewrites_match_the_mapping_api(pairs):
    for mine, reference, argument in (
        (rewrite.apply_oauth, reference_oauth, "tok"),
        (rewrite.apply_api_key, reference_api_key, "key"),
        (rewrite.redact_injected, reference_redact, "acct"),
    ):
        ours, theirs = headers(*pairs), headers(*pairs)
        mine(ours, argument)
        reference(theirs, argument)
        assert ours.fields == theirs.fields, mine.__name__


def test_strip_proxy_key_keeps_the_clients_own_credentials():
    key = "tc-proxy-key"
    h = headers(("X-Teamclaude-Key", key), ("Authorization", "Bearer client-oauth"), ("x-api-key", key), ("accept", "*/*"))
    rewrite.strip_proxy_key(h, Keyring(key))
    assert h.fields == ((b"Authorization", b"Bearer client-oauth"), (b"accept", b"*/*"))
    h = headers(("authorization", f"Bearer {key}"), ("x-api-key", "sk-ant-client"))
    rewrite.strip_proxy_key(h, Keyring(key))
    assert h.fields == ((b"x-api-key", b"sk-ant-client"),)
