"""`CopyRows`: each row's COPY bytes are its fields' own binary encodings, one after another."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from ingestion.copy_rows import CopyRows, _field_encoder
from ingestion.events import INGEST_COLUMNS, ChangeRow
from teston.core.schema import RecentChange

_COLUMNS = sa.inspect(RecentChange).columns
ENCODERS = [_field_encoder(_COLUMNS[name].type) for name in INGEST_COLUMNS]
MOMENT = datetime(2021, 8, 27, 13, 20, 5, 123456, tzinfo=UTC)


def fields_one_by_one(row: ChangeRow) -> bytes:
    """The row as the binary COPY format has it: a field count, then each field by its column's encoder."""
    return struct.pack("!h", len(row)) + b"".join(
        encode(value) for encode, value in zip(ENCODERS, row, strict=True)
    )


def rows() -> list[ChangeRow]:
    full = ChangeRow(
        MOMENT, uuid.uuid4(), "kowiki", "ko.wikipedia.org", "ko", "wikipedia", "142", -(2**31),
        "위키백과:사랑방 😀", "", True, True, False, 2**31 - 1, 0, -(2**63), 2**63 - 1, 1, "thanks", "thank",
        'tab\tnew line\nbackslash\\ quote"', '{"é": ["\\u00e9", 1.5, null]}',
    )  # fmt: skip
    empty = ChangeRow(
        MOMENT.replace(microsecond=0), uuid.uuid4(), "x", "x", None, "x", "log", *([None] * 3), False, None,
        None, *([None] * 7), None, "[]",
    )  # fmt: skip
    same_wiki = full._replace(event_id=uuid.uuid4(), title="Other", length_old=None, revision_new=None)
    return [full, empty, same_wiki]


def test_each_row_is_its_fields_encoded_one_by_one() -> None:
    written = rows()
    batch = CopyRows(written)
    data = b"".join(batch.copy_data())
    body = b"".join(fields_one_by_one(row) for row in written)
    assert data == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + body + b"\xff\xff"
    assert len(batch) == 3
    assert batch.wikis == {"kowiki", "x"}


@pytest.mark.parametrize(
    ("column", "value"),
    [("length_old", 2**31), ("revision_new", 2**63), ("title", "lone \udc80 surrogate"), ("namespace", "0")],
)
def test_a_field_that_does_not_fit_says_what_its_encoder_says(column: str, value: object) -> None:
    good, _, _ = rows()
    bad = good._replace(event_id=uuid.uuid4(), **{column: value})
    with pytest.raises((struct.error, UnicodeEncodeError, AttributeError)) as raised:
        fields_one_by_one(bad)
    batch = CopyRows([good, bad])
    assert len(batch) == 1
    (unencodable,) = batch.unencodable
    assert unencodable.reason == f"unencodable row: {type(raised.value).__name__}: {raised.value}"
    assert unencodable.payload == bad.raw
