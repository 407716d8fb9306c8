"""`GET /v1/models` of the fake: the list shape of the real Models API (newest first, with
`has_more`, `first_id`, `last_id`), paged by `limit`, `after_id` and `before_id`."""

from __future__ import annotations

from typing import Any

# (id, display name, created_at), newest first like the real list.
MODELS = (
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z"),
)
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000


def models_answer(query: dict[str, str]) -> dict[str, Any]:
    """The page the query asks for; ValueError for a bad `limit` (the real API's 400)."""
    text = query.get("limit", str(DEFAULT_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValueError(f"limit: Input should be between 1 and {MAX_LIMIT}")
    limit = int(text)
    ids = [model[0] for model in MODELS]
    start, end = 0, len(MODELS)
    if query.get("after_id") in ids:
        start = ids.index(query["after_id"]) + 1
    if query.get("before_id") in ids:
        end = ids.index(query["before_id"])
        start = max(start, end - limit)
    page = MODELS[start:end][:limit]
    data = [{"type": "model", "id": id_, "display_name": name, "created_at": created} for id_, name, created in page]
    return {
        "data": data,
        "has_more": start + len(page) < end,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
