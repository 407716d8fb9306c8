from __future__ import annotations

import pytest

from teamclaude.shared.connection import display_url


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://teamclaude:pw@[::1]:6380/0", "rediss://teamclaude:***@[::1]:6380/0"),
    ("redis://pw@127.0.0.1/0", "redis://***@127.0.0.1/0"),  # the colon forgotten: a password all the same
    ("redis://127.0.0.1/0?password=pw&db=2", "redis://127.0.0.1/0?password=***&db=2"),
    ("rediss://u:pw@h:6380/0?ssl_ca_certs=/ca.pem&ssl_password=pw", "rediss://u:***@h:6380/0?ssl_ca_certs=/ca.pem&ssl_password=***"),
])
def test_display_url_masks_every_password(url: str, shown: str) -> None:
    assert display_url(url) == shown
