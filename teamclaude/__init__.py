"""teamclaude: pool Claude accounts behind one local endpoint (a mitmproxy addon)."""

__version__ = "0.1.0"
