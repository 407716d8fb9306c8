from teamclaude.client_keys import create
from teamclaude.client_usage import ClientUsage


def test_limit_counts_in_flight_and_every_end_frees_a_place():
    _, ci = create("ci", 2, 1_000)
    _, dev = create("dev", None, 2_000)
    usage = ClientUsage()
    assert usage.begin(ci) and usage.begin(ci)
    assert not usage.begin(ci)  # at its limit: refused, not counted in flight
    assert all(usage.begin(dev) for _ in range(10))
    usage.end("ci", 100, 0.5)
    assert usage.in_flight("ci") == 1 and usage.begin(ci)
    usage.end("ci", 0, 0.0)
    usage.end("ci", 20, 0.25)
    entries = {e["name"]: e for e in usage.snapshot([ci, dev])}
    assert entries["ci"] == {"name": "ci", "created_at": 1.0, "max_concurrent": 2, "in_flight": 0, "requests": 3,
                             "refused": 1, "tokens": 120, "cost_usd": 0.75}
    assert entries["dev"]["in_flight"] == 10 and entries["dev"]["max_concurrent"] is None


def test_a_removed_key_still_ends_its_requests_and_is_not_listed():
    _, gone = create("gone", 1, 0)
    usage = ClientUsage()
    assert usage.begin(gone)
    usage.end("gone", 5, 0.0)
    assert usage.in_flight("gone") == 0 and usage.snapshot([]) == []
