"""Passwords and tokens taken out of text before it is printed or logged.

Known secrets (the Discord token, a configured database password) are replaced wherever they appear;
besides, anything shaped like a secret is masked: a conninfo `password=…`, the password of a URL
(`scheme://user:password@host`) and a Discord bot token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"

_CONNINFO_PASSWORD = re.compile(r"""(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'",;)]+)""", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s/]+)(@)", re.IGNORECASE)
# A bot token: base64 of the user id, a timestamp part and an HMAC part, separated by dots.
_DISCORD_TOKEN = re.compile(r"\b[A-Za-z0-9_-]{23,30}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}")


def _url_password(match: re.Match[str]) -> str:
    # The placeholder of a usage example (`postgresql://user:password@host`) is no secret.
    password = match.group(2)
    return match.group(0) if password == "password" else f"{match.group(1)}{MASK}{match.group(3)}"  # noqa: S105


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and anything shaped like a password or token masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _CONNINFO_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    text = _URL_PASSWORD.sub(_url_password, text)
    return _DISCORD_TOKEN.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in every record's message and traceback before it is written."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message, self._secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        return True


def install(handler: logging.Handler, secrets: Iterable[str] = ()) -> None:
    """Mask secrets in everything `handler` writes."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter(secrets))
