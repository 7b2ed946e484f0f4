"""One `recentchange` event's JSON text → one row of `recent_changes`, a quarantine record, or a canary.

Pure and total: `parse_event` never raises, whatever a stream sends (the ingester must not stop), and every
row it returns can be stored by PostgreSQL as it is.

Payload shapes: the fields follow Wikimedia's `mediawiki/recentchange` schema
(schemas-event-primary `jsonschema/mediawiki/recentchange/1.0.0`), which requires nothing but `meta` and
allows any extra property, and the 2018 shape without `$schema` and `meta.stream`. Leniency rules:

* Strict for what becomes a typed column: `meta.id` (a UUID), `timestamp` (an integer Unix time in a sane
  range), `type` and `bot` (the table requires them), `namespace`, `title`, `user`, `comment`, `minor`,
  `patrolled`, `length.old/new`, `revision.old/new`, `id`, `log_type`, `log_action`, `wiki`,
  `server_name`, `meta.domain`. A value of the wrong JSON type, or outside the column's integer range, is a
  producer bug, and guessing would put wrong figures in the roll-ups; the event goes to quarantine with the
  reason, its text kept whole for a later replay.
* `null` and absence are the same everywhere, and every typed field but the four above may be missing:
  `length`/`revision` only come with `edit` and `new` (and `old` is absent or null for `new`), `log_*` only
  with `log`. Which fields a type carries is not enforced: what is sent is stored.
* Everything else (`log_id`, `log_params` as an object, array or string, `parsedcomment`, `title_url`,
  `notify_url`, unknown fields) is not looked at and stays in `raw` exactly as sent.
* Unknown `type` values (such as `"142"`) are kept as they are.

Text PostgreSQL cannot store is repaired or refused: U+0000 (which neither `text` nor `jsonb` accept, nor
`jsonb` the escape `\\u0000`) is replaced by U+FFFD in the columns and in `raw`; lone surrogate escapes and
numbers beyond the range of `jsonb`'s `numeric` are refused.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, final

import msgspec

from ingestion.event_shapes import JSON_DECODER, JSON_ENCODER, KNOWN_DECODER, RecentChangeFields
from teston.core.schema import RECENT_CHANGE_COLUMNS
from teston.core.wikis import WikiCatalog

__all__ = [
    "CANARY",
    "INGEST_COLUMNS",
    "MAX_REJECTED_PAYLOAD",
    "Canary",
    "ChangeRow",
    "Rejection",
    "parse_event",
]

# The columns the ingester writes, in order; `received_at` is the server's `now()`.
INGEST_COLUMNS: tuple[str, ...] = tuple(c for c in RECENT_CHANGE_COLUMNS if c != "received_at")

# A quarantined payload is kept up to this many characters: enough to see what went wrong.
MAX_REJECTED_PAYLOAD = 1_000_000

# Event times outside these bounds are not Wikipedia edits (Wikipedia began in January 2001): a producer
# bug, and a far-off day would need a partition of its own.
EARLIEST_EVENT_TIME = datetime(2001, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)
_EARLIEST_TIMESTAMP = int(EARLIEST_EVENT_TIME.timestamp())
_LATEST_TIMESTAMP = int(LATEST_EVENT_TIME.timestamp())


_NUL = "\0"
_NUL_ESCAPE = "\\u0000"
_REPLACEMENT = "\ufffd"

_new_row = tuple.__new__


class ChangeRow(NamedTuple):
    """One `recent_changes` row, its fields in `INGEST_COLUMNS` order (the order of the ingester's COPY)."""

    event_time: datetime
    event_id: uuid.UUID
    wiki: str
    server_name: str
    lang: str | None
    project: str
    type: str
    namespace: int | None
    title: str | None
    user_name: str | None
    bot: bool
    minor: bool | None
    patrolled: bool | None
    length_old: int | None
    length_new: int | None
    revision_old: int | None
    revision_new: int | None
    rcid: int | None
    log_type: str | None
    log_action: str | None
    comment: str | None
    raw: str  # the event's JSON text, for the `jsonb` column


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event refused into quarantine: why, and what was received (storable as `text`)."""

    reason: str
    payload: str


@final
class Canary:
    """The event was a canary (`meta.domain == "canary"`): dropped, neither stored nor counted.

    EventStreams has sent these heartbeats since 2023 (Wikimedia Phabricator T266798). One instance
    exists, `CANARY`; `Canary()` returns it.
    """

    __slots__ = ()
    _instance: ClassVar[Canary | None] = None

    def __new__(cls) -> Canary:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "CANARY"

    def __reduce__(self) -> tuple[type[Canary], tuple[()]]:
        return (Canary, ())


CANARY = Canary()


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_EXPECTED_GOT = re.compile(r"Expected `([^`]*)`, got `([^`]*)`")


def parse_event(payload: bytes | str, catalog: WikiCatalog) -> ChangeRow | Rejection | Canary:
    """The row for one event's JSON text, or why it is refused, or `CANARY`; never raises."""
    try:
        return _parse(payload, catalog)
    except Exception as exc:  # the last line of defence: nothing a stream sends may stop the ingester
        return _reject(f"internal error: {type(exc).__name__}: {exc}", payload)


def _parse(payload: bytes | str, catalog: WikiCatalog) -> ChangeRow | Rejection | Canary:
    source: bytes | str
    if isinstance(payload, str):
        text = source = payload
    else:
        source = bytes(payload)
        try:
            text = source.decode("utf-8")  # `raw` is text; this also checks the bytes msgspec skips over
        except UnicodeDecodeError as exc:
            return _reject(f"invalid UTF-8: {exc.reason} at byte {exc.start}", payload)
    # The fast path, for an event of the known shape (nearly all of them): one typed decode, which only
    # answers when the full decode would give the same row or canary; anything else (an unknown field, a
    # value of another type, an escaped NUL, an error) takes the full decode, which has the reasons. What
    # it saves is in BENCHMARKS.md.
    if _NUL_ESCAPE not in text:
        try:
            known = KNOWN_DECODER.decode(source)
        except Exception:  # the full decode says what is wrong
            known = None
        if known is not None:
            if known.meta is not None and known.meta.domain == "canary":
                return CANARY
            return _row(known, text, catalog, payload)
    return _parse_document(payload, source, text, catalog)


def _parse_document(
    payload: bytes | str, source: bytes | str, text: str, catalog: WikiCatalog
) -> ChangeRow | Rejection | Canary:
    """The full decode: the whole payload as untyped JSON, judged field by field."""
    try:
        # From bytes when given bytes: msgspec reads UTF-8, and would otherwise re-encode the text.
        document = JSON_DECODER.decode(source)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # Errors of untyped decoding locate themselves only as "$[...]"; that says nothing.
        message = str(exc).removesuffix(" - at `$[...]`")
        if message == "Input data was truncated" and _SURROGATE_ESCAPE.search(text):
            # msgspec can report an unpaired surrogate escape near the end as truncated input.
            message += " (or a \\uD800-\\uDFFF escape without its pair)"
        return _reject(f"invalid JSON: {message}", payload)
    except RecursionError:
        return _reject("invalid JSON: nested too deeply", payload)
    except UnicodeEncodeError as exc:  # a `str` payload holding lone surrogates
        return _reject(f"invalid text: {exc.reason} at character {exc.start}", payload)
    if not isinstance(document, dict):
        return _reject(f"not a JSON object: got {_json_type(document)}", payload)

    # Canaries are dropped whatever else they contain.
    meta = document.get("meta")
    if isinstance(meta, dict) and meta.get("domain") == "canary":
        return CANARY

    # The text may hold U+0000 (or merely `\\u0000`, an escaped backslash; decoding tells them apart).
    # Neither `text` nor `jsonb` can store U+0000: replace it in every string and key, and store the
    # re-encoded document instead of the original text.
    if _NUL_ESCAPE in text and _has_nul(document):
        document = _replace_nul(document)
        text = JSON_ENCODER.encode(document).decode("utf-8")

    try:
        event = msgspec.convert(document, RecentChangeFields)
    except msgspec.ValidationError as exc:
        return _reject(_field_error(str(exc)), payload)
    return _row(event, text, catalog, payload)


def _row(
    event: RecentChangeFields, text: str, catalog: WikiCatalog, payload: bytes | str
) -> ChangeRow | Rejection:
    meta = event.meta
    if meta is None:
        return _reject("missing meta", payload)
    if meta.id is None:
        return _reject("missing meta.id", payload)
    timestamp = event.timestamp
    if timestamp is None:
        return _reject("missing timestamp", payload)
    if not _EARLIEST_TIMESTAMP <= timestamp < _LATEST_TIMESTAMP:
        return _reject(
            f"field 'timestamp': {timestamp} is outside {EARLIEST_EVENT_TIME:%Y-%m-%d}"
            f"..{LATEST_EVENT_TIME:%Y-%m-%d}",
            payload,
        )
    if event.type is None:
        return _reject("missing type", payload)
    if event.bot is None:
        return _reject("missing bot", payload)
    # The 2018 shape and today's both carry `wiki` and `server_name`; without them the host in
    # `meta.domain` still names the wiki.
    server_name = event.server_name or meta.domain or None
    dbname = event.wiki or None
    if server_name is None and dbname is None:
        return _reject("missing wiki", payload)
    wiki = catalog.for_event(server_name, dbname)
    if not wiki.dbname:  # a host the catalog does not list, and no `wiki` field to say its database
        return _reject(f"missing wiki (server_name {server_name!r} is not a known wiki)", payload)
    length = event.length
    revision = event.revision
    # `tuple.__new__` skips the keyword handling of the NamedTuple's own `__new__`, a measurable part of
    # the parse (see BENCHMARKS.md).
    return _new_row(
        ChangeRow,
        (
            datetime.fromtimestamp(timestamp, UTC),
            meta.id,
            wiki.dbname,
            wiki.server_name,
            wiki.code,
            wiki.project,
            event.type,
            event.namespace,
            event.title,
            event.user,
            event.bot,
            event.minor,
            event.patrolled,
            length.old if length is not None else None,
            length.new if length is not None else None,
            revision.old if revision is not None else None,
            revision.new if revision is not None else None,
            event.id,
            event.log_type,
            event.log_action,
            event.comment,
            text,
        ),
    )


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return _NUL in value
    if isinstance(value, dict):
        return any(_NUL in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _replace_nul(value: Any) -> Any:
    """`value` with U+0000 replaced by U+FFFD in every string and key."""
    if isinstance(value, str):
        return value.replace(_NUL, _REPLACEMENT)
    if isinstance(value, dict):
        return {k.replace(_NUL, _REPLACEMENT): _replace_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_nul(v) for v in value]
    return value


def _field_error(message: str) -> str:
    """A msgspec validation message as a reason: "field 'namespace': expected int, got str"."""
    text, _, path = message.partition(" - at `$")
    path = path.rstrip("`").lstrip(".")
    match = _EXPECTED_GOT.fullmatch(text)
    if match:
        expected = match[1].removesuffix(" | null").replace("uuid", "UUID string")
        got = match[2].replace("decimal", "float")  # fractions are decoded as Decimal
        text = f"expected {expected}, got {got}"
    else:
        text = text.replace("`", "")
        text = text[:1].lower() + text[1:]
    return f"field '{path}': {text}" if path else text


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return type(value).__name__


def _reject(reason: str, payload: bytes | str) -> Rejection:
    """A quarantine record: the payload as text (`text` holds no U+0000), at most `MAX_REJECTED_PAYLOAD`."""
    if isinstance(payload, str):
        # A `str` from elsewhere than a UTF-8 decode may hold lone surrogates, which UTF-8 cannot carry.
        text = payload.encode("utf-8", "backslashreplace").decode("utf-8")
    else:
        # Undecodable bytes are shown as \xNN escapes, so the record says exactly what was received.
        text = bytes(payload).decode("utf-8", "backslashreplace")
    text = text.replace(_NUL, _REPLACEMENT)
    if len(text) > MAX_REJECTED_PAYLOAD:
        text = (
            text[:MAX_REJECTED_PAYLOAD]
            + f"\n[truncated: {len(text):,} characters received, the first {MAX_REJECTED_PAYLOAD:,} kept]"
        )
    return Rejection(reason, text)
