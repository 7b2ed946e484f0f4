"""Who a message actually pings, given its content and `allowed_mentions`.

Follows https://discord.com/developers/docs/resources/message#allowed-mentions-object: with no
`allowed_mentions` everything in the content pings; with one, only what `parse` or the explicit
id lists allow, and the replied-to author only when `replied_user` is true.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_USER = re.compile(r"<@!?(\d+)>")
_ROLE = re.compile(r"<@&(\d+)>")
_EVERYONE = re.compile(r"@(everyone|here)\b")


@dataclass(frozen=True)
class Pings:
    user_ids: list[int] = field(default_factory=list)
    role_ids: list[int] = field(default_factory=list)
    everyone: bool = False


def _unique(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


def pings(
    content: str,
    allowed_mentions: dict[str, Any] | None,
    *,
    replied_user_id: int | None = None,
    may_mention_everyone: bool = True,
) -> Pings:
    """The users, roles and @everyone a message with `content` notifies."""
    users = [int(found) for found in _USER.findall(content)]
    roles = [int(found) for found in _ROLE.findall(content)]
    everyone = bool(_EVERYONE.search(content)) and may_mention_everyone
    if allowed_mentions is None:
        if replied_user_id is not None:
            users.append(replied_user_id)
        return Pings(_unique(users), _unique(roles), everyone)
    parse = set(allowed_mentions.get("parse") or [])
    allowed_users = {int(user_id) for user_id in allowed_mentions.get("users") or []}
    allowed_roles = {int(role_id) for role_id in allowed_mentions.get("roles") or []}
    users = [u for u in users if "users" in parse or u in allowed_users]
    roles = [r for r in roles if "roles" in parse or r in allowed_roles]
    if replied_user_id is not None and allowed_mentions.get("replied_user"):
        users.append(replied_user_id)
    return Pings(_unique(users), _unique(roles), everyone and "everyone" in parse)


def mentions_user(content: str, user_id: int) -> bool:
    """Whether `content` contains a user mention of `user_id`."""
    return any(int(found) == user_id for found in _USER.findall(content))
