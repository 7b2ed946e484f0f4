"""Rows in PostgreSQL's binary COPY format: `CopyRows`, one batch's rows encoded as they are appended.

The layout is PostgreSQL's "Binary Format" of COPY (https://www.postgresql.org/docs/current/sql-copy.html):
a signature, then per row a 16-bit field count and per field a 32-bit length (-1 for NULL) followed by the
type's binary send format, then a -1 field count. The fields are `INGEST_COLUMNS`, in that order (the
fields of `ChangeRow`); each is encoded by the binary format of its column's type in
`teston.core.schema`, so a new column needs no edit here.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from ingestion.events import INGEST_COLUMNS
from teston.core.partitions import day_of
from teston.core.schema import RecentChange

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_INT32 = struct.Struct("!i")
_LENGTH = _INT32.pack
_INT4_FIELD = struct.Struct("!ii").pack  # length 4, then an int4
_INT8_FIELD = struct.Struct("!iq").pack  # length 8, then an int8 (or a timestamptz)
_BOOL_FIELD = {True: b"\x00\x00\x00\x01\x01", False: b"\x00\x00\x00\x01\x00", None: _NULL}
_ROW_START = len(INGEST_COLUMNS).to_bytes(2, "big")
_UUID_LENGTH = _LENGTH(16)
_JSONB_VERSION = b"\x01"  # jsonb's binary format: a version byte, then the JSON text
# timestamptz is microseconds since 2000-01-01 UTC.
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Encoding errors of a row that does not fit its columns (`parse_event` never returns one).
_UNENCODABLE = (struct.error, UnicodeEncodeError, OverflowError, TypeError, AttributeError, ValueError)

_COLUMN = {name: index for index, name in enumerate(INGEST_COLUMNS)}
_TIME = _COLUMN["event_time"]
_EVENT_ID = _COLUMN["event_id"]
_WIKI = _COLUMN["wiki"]
_RAW = _COLUMN["raw"]

# Columns with few distinct values in a batch (the event second, the wiki, the type, flags...): each run
# of them is encoded once per batch and distinct values, not once per row. A column missing here is
# simply encoded for every row.
_REPEATING = frozenset(
    (
        "event_time",
        "wiki",
        "server_name",
        "lang",
        "project",
        "type",
        "namespace",
        "bot",
        "minor",
        "patrolled",
        "log_type",
        "log_action",
    )
)


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode()
    return _LENGTH(len(data)) + data


def _int4(value: int | None) -> bytes:
    return _NULL if value is None else _INT4_FIELD(4, value)


def _int8(value: int | None) -> bytes:
    return _NULL if value is None else _INT8_FIELD(8, value)


def _bool(value: bool | None) -> bytes:
    return _BOOL_FIELD[value]


def _timestamptz(value: datetime | None) -> bytes:
    return _NULL if value is None else _INT8_FIELD(8, (value - _POSTGRES_EPOCH) // _MICROSECOND)


def _uuid(value: UUID | None) -> bytes:
    return _NULL if value is None else _UUID_LENGTH + value.bytes


def _jsonb(value: str | None) -> bytes:
    if value is None:
        return _NULL
    document = value.encode()
    return _LENGTH(len(document) + 1) + _JSONB_VERSION + document


def _field_encoder(column_type: sa.types.TypeEngine[Any]) -> Callable[[Any], bytes]:
    """The binary send format of a `recent_changes` column's type (BigInteger before its base Integer)."""
    encoders: tuple[tuple[type[sa.types.TypeEngine[Any]], Callable[[Any], bytes]], ...] = (
        (sa.DateTime, _timestamptz),
        (sa.Uuid, _uuid),
        (JSONB, _jsonb),
        (sa.BigInteger, _int8),
        (sa.Integer, _int4),
        (sa.Boolean, _bool),
        (sa.String, _text),
    )
    for kind, encoder in encoders:
        if isinstance(column_type, kind):
            return encoder
    raise TypeError(f"no binary COPY encoding for column type {column_type!r}")


@dataclass(frozen=True, slots=True)
class _Segment:
    """Consecutive fields of a row: their columns, their places in it, how to encode them, cached or not."""

    columns: tuple[str, ...]
    indexes: tuple[int, ...]
    encode: Callable[[Any], bytes]
    repeating: bool


def _joined(encoders: Sequence[Callable[[Any], bytes]]) -> Callable[[tuple[Any, ...]], bytes]:
    return lambda values: b"".join([encode(value) for encode, value in zip(encoders, values, strict=True)])


def _segments() -> tuple[_Segment, ...]:
    """The row's fields in `INGEST_COLUMNS` order, runs of repeating columns grouped."""
    table_columns = sa.inspect(RecentChange).columns
    runs: list[tuple[bool, list[int]]] = []
    for index, name in enumerate(INGEST_COLUMNS):
        repeating = name in _REPEATING
        if runs and repeating and runs[-1][0]:
            runs[-1][1].append(index)
        else:
            runs.append((repeating, [index]))
    segments = []
    for repeating, indexes in runs:
        columns = tuple(INGEST_COLUMNS[i] for i in indexes)
        encoders = [_field_encoder(table_columns[name].type) for name in columns]
        encode = encoders[0] if len(indexes) == 1 else _joined(encoders)
        segments.append(_Segment(columns, tuple(indexes), encode, repeating))
    return tuple(segments)


_SEGMENTS = _segments()


def _wiki_segment() -> tuple[int, int | None]:
    """Which segment holds `wiki`, and its place in the segment's values (None: the only column)."""
    for index, segment in enumerate(_SEGMENTS):
        if "wiki" in segment.columns:
            return index, segment.columns.index("wiki") if len(segment.columns) > 1 else None
    raise LookupError("no segment holds the wiki")


_WIKI_SEGMENT = _wiki_segment()
# The columns a row's COPY fields are, in order: `INGEST_COLUMNS`, as the segments cover them.
COPY_COLUMNS: tuple[str, ...] = tuple(name for segment in _SEGMENTS for name in segment.columns)

# The fields of one value as expressions of `{v}` (the value) and `{b}` (`{v}.encode()`, when the encoder
# needs it), for the encoders simple enough to be written out in the row's encoder below; others are called.
_INLINE: dict[Callable[[Any], bytes], tuple[bool, tuple[str, ...]]] = {
    _text: (True, ("_NULL if {v} is None else _LENGTH(len({b}))", "{b}")),
    _int4: (False, ("_NULL if {v} is None else _INT4_FIELD(4, {v})",)),
    _int8: (False, ("_NULL if {v} is None else _INT8_FIELD(8, {v})",)),
    _uuid: (False, ("_NULL if {v} is None else _UUID_LENGTH + {v}.bytes",)),
    _jsonb: (True, ("_NULL if {v} is None else _LENGTH(len({b}) + 1) + _JSONB_VERSION", "{b}")),
}


def _row_encoder_source() -> str:
    """The source of `encoder(<caches>)`, which returns `encode(row)`: the row's COPY bytes.

    One function with `_SEGMENTS` written out, as `collections.namedtuple` and `dataclasses` write theirs:
    a loop over the segments, a call per field and a list of the fields cost about as much as encoding the
    fields (see BENCHMARKS.md). The fields are encoded in the segments' order, so the first that cannot be
    encoded raises what the encoders called one by one would raise.
    """
    values = [f"v{index}" for index in range(len(INGEST_COLUMNS))]
    body = [f"({', '.join(values)},) = pick_all(row)"]
    fields = ["_ROW_START"]
    caches = []
    for number, segment in enumerate(_SEGMENTS):
        indexes = segment.indexes
        if segment.repeating:
            caches.append(f"c{number}")
            key = values[indexes[0]] if len(indexes) == 1 else f"({', '.join(values[i] for i in indexes)})"
            body += [
                f"k = {key}",
                f"f{number} = c{number}.get(k)",
                f"if f{number} is None:",
                f"    f{number} = c{number}[k] = e{number}(k)",
            ]
            fields.append(f"f{number}")
        elif segment.encode in _INLINE:
            encodes, expressions = _INLINE[segment.encode]
            value, encoded = values[indexes[0]], f"b{number}"
            if encodes:
                body.append(f'{encoded} = b"" if {value} is None else {value}.encode()')
            for position, expression in enumerate(expressions):
                if expression == "{b}":
                    fields.append(encoded)
                else:
                    body.append(f"f{number}_{position} = {expression.format(v=value, b=encoded)}")
                    fields.append(f"f{number}_{position}")
        else:
            body.append(f"f{number} = e{number}({values[indexes[0]]})")
            fields.append(f"f{number}")
    body.append(f'return b"".join(({", ".join(fields)},))')
    header = [f"def encoder({', '.join(caches)}):", "    def encode(row):"]
    return "\n".join([*header, *(f"        {line}" for line in body), "    return encode"])


def _row_encoder() -> Callable[..., Callable[[Sequence[Any]], bytes]]:
    """`encoder(<a dict per repeating segment>)`: the function encoding a row with those caches."""
    namespace: dict[str, Any] = {
        "pick_all": itemgetter(*range(len(INGEST_COLUMNS))),
        "_ROW_START": _ROW_START,
        "_NULL": _NULL,
        "_LENGTH": _LENGTH,
        "_INT4_FIELD": _INT4_FIELD,
        "_INT8_FIELD": _INT8_FIELD,
        "_UUID_LENGTH": _UUID_LENGTH,
        "_JSONB_VERSION": _JSONB_VERSION,
        **{f"e{number}": segment.encode for number, segment in enumerate(_SEGMENTS)},
    }
    exec(_row_encoder_source(), namespace)  # noqa: S102 - source made above from the table's own columns
    return namespace["encoder"]  # type: ignore[no-any-return]


_ROW_ENCODER = _row_encoder()


@dataclass(frozen=True, slots=True)
class UnencodableRow:
    """A row that cannot be written to its columns (a value out of range, text UTF-8 cannot carry)."""

    reason: str
    payload: str


class CopyRows:
    """One batch's rows, encoded for binary COPY as they are appended; later copies of an event dropped.

    Row tuples kept until the commit would each hold a `UUID` that the cyclic garbage collector walks over
    and over (see BENCHMARKS.md); it never looks at bytes, and the writer sends them as they are.
    """

    __slots__ = (
        "_caches",
        "_data",
        "_encode",
        "_ends",
        "_first_times",
        "_other_copies",
        "received",
        "times",
        "unencodable",
    )

    def __init__(self, rows: Iterable[Sequence[Any]] = ()) -> None:
        self._data = bytearray()
        self._ends = array("q")  # where each row's bytes end in `_data`
        # Event id (as an int) → the event time of its first copy; a primary key is both, so another
        # time with the same id is another row (it has never happened, but the table would take it).
        self._first_times: dict[int, datetime] = {}
        self._other_copies: set[tuple[int, datetime]] = set()
        # Per repeating segment, its values → their encoded fields; the row's encoder fills them.
        self._caches: dict[int, dict[Any, bytes]] = {
            number: {} for number, segment in enumerate(_SEGMENTS) if segment.repeating
        }
        self._encode = _ROW_ENCODER(*self._caches.values())
        self.received = 0  # rows appended, copies included
        self.times: set[datetime] = set()  # distinct event times of the rows kept
        self.unencodable: list[UnencodableRow] = []
        for row in rows:
            self.append(row)

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def days(self) -> set[date]:
        """The UTC days of the rows kept (the partitions they go to)."""
        return {day_of(moment) for moment in self.times}

    @property
    def wikis(self) -> set[str]:
        """The wikis of the rows appended (read from the encoding cache: nothing is done per row)."""
        segment, position = _WIKI_SEGMENT
        cache = self._caches[segment]  # `wiki` is a repeating column
        return {values[position] for values in cache} if position is not None else set(cache)

    def append(self, row: Sequence[Any]) -> None:
        """Add a row in `INGEST_COLUMNS` order, unless a copy of it (same primary key) is already here."""
        # The per-row path of the whole ingester: locals and cached encodings.
        self.received += 1
        moment = row[_TIME]
        key = row[_EVENT_ID].int
        first = self._first_times.get(key)
        if first is None:
            self._first_times[key] = moment
        elif first == moment or (key, moment) in self._other_copies:
            return
        else:
            self._other_copies.add((key, moment))
        try:
            encoded = self._encode(row)
        except _UNENCODABLE as exc:
            text = str(row[_RAW]).encode("utf-8", "backslashreplace").decode("utf-8")
            self.unencodable.append(UnencodableRow(f"unencodable row: {type(exc).__name__}: {exc}", text))
            return
        self._data += encoded
        self._ends.append(len(self._data))
        self.times.add(moment)

    def copy_data(self, start: int = 0, stop: int | None = None) -> Iterator[bytes | memoryview]:
        """The COPY stream of rows `start` to `stop` (all by default), signature and trailer included."""
        stop = len(self._ends) if stop is None else stop
        begin = self._ends[start - 1] if start else 0
        yield _SIGNATURE
        yield memoryview(self._data)[begin : self._ends[stop - 1] if stop else 0]
        yield _TRAILER

    def raw(self, index: int) -> str:
        """Row `index`'s JSON text (its `raw` field), as for a quarantine record."""
        return self._field(index, _RAW)[1:].decode()  # after jsonb's version byte

    def routed(self) -> Iterator[tuple[str, str, bytes]]:
        """Each row's wiki, event id (as text) and JSON text (UTF-8), as the bus routes, deduplicates and
        carries it; one walk over each row's fields."""
        data, unpack = self._data, _INT32.unpack_from
        start = 0
        for end in self._ends:
            position, wiki, event_id, raw = start + 2, "", "", b""
            for column in range(_RAW + 1):
                (length,) = unpack(data, position)
                position += 4
                if column == _WIKI:
                    wiki = data[position : position + length].decode()
                elif column == _EVENT_ID:
                    hexed = data[position : position + 16].hex()
                    event_id = f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"
                elif column == _RAW:
                    raw = bytes(data[position + 1 : position + length])  # after jsonb's version byte
                if length > 0:
                    position += length
            yield wiki, event_id, raw
            start = end

    def _field(self, index: int, column: int) -> bytes:
        position = (self._ends[index - 1] if index else 0) + 2
        for _ in range(column):
            (length,) = _INT32.unpack_from(self._data, position)
            position += 4 + max(length, 0)
        (length,) = _INT32.unpack_from(self._data, position)
        return bytes(self._data[position + 4 : position + 4 + max(length, 0)])
