"""Run TestON's command line with discord.py pointed at a fake Discord, for tests of bot processes.

`python -m tests.fakediscord.launch BASE_URL GATEWAY_URL bot` runs `teston bot` in a process of its own,
its REST calls and gateway connections going to the fake (see `discordpy.pointed_at`).
"""

from __future__ import annotations

import sys

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route


def main(argv: list[str]) -> None:
    base_url, gateway_url, *arguments = argv
    # The whole process talks to the fake, so the attributes are set for good, not for a block.
    Route.BASE = base_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    from teston.cli import app

    app(arguments, prog_name="teston")


if __name__ == "__main__":
    main(sys.argv[1:])
