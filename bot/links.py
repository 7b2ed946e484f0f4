"""Links to wiki pages, user contributions and diffs, as MediaWiki spells them."""

from __future__ import annotations

from urllib.parse import quote

from bot.answers import Change


def page_url(server_name: str, title: str) -> str:
    # MediaWiki writes spaces as underscores; everything else is percent-encoded, including the
    # parentheses that would otherwise end a markdown link early.
    return f"https://{server_name}/wiki/{quote(title.replace(' ', '_'), safe='/:')}"


def contributions_url(server_name: str, user_name: str) -> str:
    return page_url(server_name, f"Special:Contributions/{user_name}")


def diff_url(change: Change) -> str | None:
    """The diff of an edit, or the first revision of a new page; log and category entries have none."""
    base = f"https://{change.server_name}/w/index.php"
    if change.type == "edit" and change.revision_new and change.revision_old:
        return f"{base}?diff={change.revision_new}&oldid={change.revision_old}"
    if change.type == "new" and change.revision_new:
        return f"{base}?oldid={change.revision_new}"
    return None
