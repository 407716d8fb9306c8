"""Fixtures shared by the OAuth, credentials, login, import and CLI tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from teamclaude.fakeupstream import FakeAccount, FakeUpstream
from teamclaude.settings import Settings

ALICE_ACCESS = "sk-ant-oat01-alice-initial-access"
ALICE_REFRESH = "sk-ant-ort01-alice-initial-refresh"


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(
        accounts=[
            FakeAccount("alice", access_token=ALICE_ACCESS, refresh_token=ALICE_REFRESH,
                        email="alice@example.com", org="Alice Org", plan="max"),
            FakeAccount("bob", api_key="sk-ant-api03-bob-key"),
        ]
    ).start()
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture
def settings(tmp_path: Path, fake: FakeUpstream) -> Settings:
    return Settings.defaults(
        tmp_path / "config.yaml",
        state_file=tmp_path / "state.json",
        upstream=fake.url,
        oauth_token_url=fake.url + "/v1/oauth/token",
        oauth_authorize_url=fake.url + "/oauth/authorize",
        oauth_profile_url=fake.url + "/api/oauth/profile",
    )


def with_settings(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, **changes)
