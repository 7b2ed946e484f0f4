"""pytest fixtures for the fake Discord.

Register with `pytest_plugins = ["tests.fakediscord.pytest_plugin"]` in the root conftest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .discordpy import pointed_at
from .server import FakeDiscord


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A running FakeDiscord (token "test-token") with discord.py pointed at it.

    Fails the test at teardown if the fake itself crashed on a request, so fake bugs never pass
    silently as client errors.
    """
    async with FakeDiscord.start() as fake:
        with pointed_at(fake):
            yield fake
    assert not fake.internal_errors, f"fake Discord failed on requests: {fake.internal_errors}"
