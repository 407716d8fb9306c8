"""The Deck: a live dashboard that reads the proxy's state file."""
