"""`teamclaude.export`: selected flows as a flow file that is safe to attach to a bug report.

Each flow is copied (the flows in mitmweb stay as they are), then every credential header,
every token field of `/v1/oauth/token` bodies, everything that looks like an Anthropic
secret and every secret the proxy knows (tokens, API keys, the proxy key) is replaced by
`<redacted>`. Prompts and answers stay: look the file over before sharing it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from mitmproxy import flow, http
from mitmproxy.io import FlowWriter

from teamclaude import redact
from teamclaude.atomic import atomic_write
from teamclaude.stored_flows import is_token_endpoint, redact_token_body, scrub_message


def redacted_copy(original: http.HTTPFlow, secrets: Iterable[str]) -> http.HTTPFlow:
    known = list(secrets)
    copy = original.copy()
    copy.request.path = redact.scrub_text(copy.request.path, known)
    token_endpoint = is_token_endpoint(copy.request)
    for message in (copy.request, copy.response):
        if message is None:
            continue
        if token_endpoint:
            redact_token_body(message)
        scrub_message(message, known)
    if copy.error is not None:
        copy.error.msg = redact.scrub_text(copy.error.msg, known)
    return copy


def export_flows(flows: Sequence[flow.Flow], path: Path, secrets: Iterable[str]) -> int:
    """Write redacted copies of the HTTP flows among `flows` to `path` (0600, atomically)."""
    known = list(secrets)
    buffer = io.BytesIO()
    writer = FlowWriter(buffer)
    count = 0
    for item in flows:
        if isinstance(item, http.HTTPFlow):
            writer.add(redacted_copy(item, known))
            count += 1
    atomic_write(path, buffer.getvalue(), mode=0o600)
    return count
