"""Redacting and scrubbing stored flows: bodies are read only within a bound."""

from __future__ import annotations

import gzip
import json

import brotli
from mitmproxy.test import tflow

from teamclaude import redact, stored_flows
from teamclaude.inflate import MAX_INFLATED_BODY

REFRESH = "client-refresh-token-0123456789"


def token_request(body: bytes, content_encoding: str | None = None):
    flow = tflow.tflow()
    flow.request.method = "POST"
    flow.request.path = "/v1/oauth/token"
    if content_encoding:
        flow.request.headers["content-encoding"] = content_encoding
    flow.request.raw_content = body
    return flow.request


def test_an_encoded_token_body_loses_its_tokens_and_keeps_its_encoding():
    body = json.dumps({"grant_type": "refresh_token", "refresh_token": REFRESH}).encode()
    request = token_request(gzip.compress(body), "gzip")
    stored_flows.redact_request(request)
    assert request.headers["content-encoding"] == "gzip"
    assert json.loads(request.get_content()) == {"grant_type": "refresh_token", "refresh_token": "<redacted>"}


def test_a_token_body_bomb_is_replaced_whole_without_inflating_it():
    request = token_request(brotli.compress(b"\0" * (256 * 1024 * 1024), quality=1), "br")
    stored_flows.redact_request(request)
    assert request.raw_content == redact.UNREADABLE_TOKEN_BODY
    assert "content-encoding" not in request.headers


def test_a_long_plain_token_body_is_replaced_whole_unparsed():
    body = json.dumps({"refresh_token": REFRESH, "padding": [{}] * redact.MAX_TOKEN_BODY}).encode()
    request = token_request(body)
    stored_flows.redact_request(request)
    assert request.raw_content == redact.UNREADABLE_TOKEN_BODY


def test_a_corrupt_encoded_token_body_is_replaced_whole():
    request = token_request(gzip.compress(REFRESH.encode())[:-4], "gzip")
    stored_flows.redact_request(request)
    assert request.raw_content == redact.UNREADABLE_TOKEN_BODY


def test_scrubbing_an_export_replaces_a_bomb_by_a_note():
    request = token_request(gzip.compress(b"\0" * (MAX_INFLATED_BODY + 1)), "gzip")
    stored_flows.scrub_message(request, [])
    assert request.raw_content == b"<removed: body inflates past %d bytes>" % MAX_INFLATED_BODY
    assert "content-encoding" not in request.headers


def test_scrubbing_keeps_a_corrupt_encoded_body_as_stored_minus_secrets():
    stored = b"\x1f\x8b not really gzip sk-ant-api03-secretsecret-1234"
    request = token_request(stored, "gzip")
    stored_flows.scrub_message(request, [])
    assert request.raw_content == b"\x1f\x8b not really gzip <redacted>"
    assert request.headers["content-encoding"] == "gzip"
