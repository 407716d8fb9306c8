"""Parts of the fake Anthropic upstream (`teamclaude.fakeupstream`): quota windows and
headers, HTTP/1.1 framing, message and SSE bodies, OAuth tokens, injected faults."""
