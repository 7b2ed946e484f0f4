"""The shapes msgspec decodes a `recentchange` event into: its typed fields, and the known shape.

`RecentChangeFields` holds what becomes a typed column, every field optional (`ingestion.events` checks
presence and says why something is missing). `KnownRecentChange` is the whole of the shape today's and
the 2018 events have, for the parser's fast path; anything else takes the general decode.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any

import msgspec

# PostgreSQL `numeric` (which `jsonb` stores numbers as) holds at most 131072 digits before the decimal
# point and 16383 after it ("value overflows numeric format" otherwise).
_MAX_NUMERIC_INTEGER_DIGITS = 131072
_MAX_NUMERIC_FRACTION_DIGITS = 16383

Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]  # PostgreSQL `integer`
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # PostgreSQL `bigint`

# Optional fields everywhere: presence rules are checked after decoding, with reasons of our own.


class _Meta(msgspec.Struct, gc=False):
    id: uuid.UUID | None = None
    domain: str | None = None


class _Lengths(msgspec.Struct, gc=False):
    old: Int32 | None = None
    new: Int32 | None = None


class _Revisions(msgspec.Struct, gc=False):
    old: Int64 | None = None
    new: Int64 | None = None


class RecentChangeFields(msgspec.Struct, gc=False):
    meta: _Meta | None = None
    id: Int64 | None = None
    type: str | None = None
    namespace: Int32 | None = None
    title: str | None = None
    comment: str | None = None
    timestamp: Int64 | None = None
    user: str | None = None
    bot: bool | None = None
    minor: bool | None = None
    patrolled: bool | None = None
    length: _Lengths | None = None
    revision: _Revisions | None = None
    server_name: str | None = None
    wiki: str | None = None
    log_type: str | None = None
    log_action: str | None = None


def _postgres_number(literal: str) -> Decimal:
    """A JSON number with a fraction or exponent, refused if `jsonb` could not store it."""
    # Called by the JSON decoder for each such literal; recentchange events normally contain none.
    number = Decimal(literal)
    _sign, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):  # NaN and infinities are not JSON, but be sure
        raise ValueError(f"number {literal[:40]} is not finite")
    if len(digits) + exponent > _MAX_NUMERIC_INTEGER_DIGITS or -exponent > _MAX_NUMERIC_FRACTION_DIGITS:
        raise ValueError(f"number {literal[:40]} is beyond the range of PostgreSQL numeric")
    return number


# Every field today's and the 2018 events carry, for the fast path of `ingestion.events`: the fields
# `RecentChangeFields` does not look at are declared with the types they always have, and any other field,
# or any other type, sends the event to the full decode. `log_params` is decoded as the full decode would
# (the float hook included), since its shape varies.


class _KnownMeta(_Meta, forbid_unknown_fields=True):
    uri: str | None = None
    request_id: str | None = None
    dt: str | None = None
    stream: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    schema_uri: str | None = None


class _KnownLengths(_Lengths, forbid_unknown_fields=True):
    pass


class _KnownRevisions(_Revisions, forbid_unknown_fields=True):
    pass


class KnownRecentChange(RecentChangeFields, forbid_unknown_fields=True):
    meta: _KnownMeta | None = None
    length: _KnownLengths | None = None
    revision: _KnownRevisions | None = None
    schema: str | None = msgspec.field(default=None, name="$schema")
    server_url: str | None = None
    server_script_path: str | None = None
    parsedcomment: str | None = None
    title_url: str | None = None
    notify_url: str | None = None
    log_id: int | None = None
    log_params: Any = None
    log_action_comment: str | None = None


# The whole payload is decoded, not only the typed fields: that checks every number against `jsonb`'s
# range and finds canaries before their fields are judged, and converting the result to the typed
# struct costs less than a second, typed decode.
JSON_DECODER = msgspec.json.Decoder(float_hook=_postgres_number)
JSON_ENCODER = msgspec.json.Encoder(decimal_format="number")
KNOWN_DECODER = msgspec.json.Decoder(KnownRecentChange, float_hook=_postgres_number)
