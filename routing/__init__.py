"""The routing engine: pure decisions from quota headers, with time passed in."""
