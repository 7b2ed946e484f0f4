"""The SSE decoder against the WHATWG "Interpreting an event stream" rules and a recorded stream."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.sse import ServerSentEvent, SSEDecoder

DATA_DIR = Path(__file__).parent / "data"
CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.sse"
CAPTURE_LINES = DATA_DIR / "2021-08-27_all-wikis_1950.jsonl"


def decode(stream: bytes, decoder: SSEDecoder | None = None) -> list[ServerSentEvent]:
    decoder = decoder or SSEDecoder()
    return decoder.feed(stream) + decoder.finish()


def decode_in_chunks(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.finish()


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# -- line ends -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [b"data: a\n\n", b"data: a\r\n\r\n", b"data: a\r\r", b"data: a\r\n\n", b"data: a\n\r", b"data: a\r\r\n"],
)
def test_every_line_end_ends_a_line(stream: bytes) -> None:
    assert decode(stream) == [ServerSentEvent("a")]


def test_cr_lf_is_one_line_end_and_lf_cr_two() -> None:
    # "a" CRLF "b" CRLF CRLF: one event of two lines. LF CR would be a blank line between them.
    assert decode(b"data: a\r\ndata: b\r\n\r\n") == [ServerSentEvent("a\nb")]
    assert decode(b"data: a\n\rdata: b\n\n") == [ServerSentEvent("a"), ServerSentEvent("b")]


def test_cr_and_lf_split_across_chunks_are_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r") == [ServerSentEvent("a\nb")]
    assert decoder.feed(b"\n") == []  # the LF of that last CRLF, not a second blank line
    assert decoder.feed(b"data: c\n\n") == [ServerSentEvent("c")]


def test_events_are_dispatched_as_soon_as_their_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    # A CR may be followed by a LF, but the line it ends is complete: no waiting for the next chunk.
    assert decoder.feed(b"data: a\r\r") == [ServerSentEvent("a")]


def test_empty_chunks_change_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n\n") == [ServerSentEvent("a")]


def test_a_line_split_over_many_chunks() -> None:
    decoder = SSEDecoder()
    for byte in b"data: hello":
        assert decoder.feed(bytes([byte])) == []
    assert decoder.feed(b"\n\n") == [ServerSentEvent("hello")]


# -- text --------------------------------------------------------------------------------------------


def test_a_leading_byte_order_mark_is_skipped_once() -> None:
    assert decode(b"\xef\xbb\xbfdata: a\n\n") == [ServerSentEvent("a")]
    # A second BOM is part of the first field's name ("\ufeffdata"), which is then unknown and ignored.
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == [ServerSentEvent("b")]
    # Only at the start of the stream.
    assert decode(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [ServerSentEvent("a")]


def test_a_byte_order_mark_split_across_chunks() -> None:
    assert decode_in_chunks([b"\xef", b"\xbb", b"\xbfdata: a\n\n"]) == [ServerSentEvent("a")]
    assert decode_in_chunks([b"\xef\xbb", b"\xbfdata: a\n\n"]) == [ServerSentEvent("a")]
    # Bytes that only begin like a BOM are kept (and decode to U+FFFD).
    assert decode_in_chunks([b"\xef\xbb", b"data: a\n\n"]) == []
    assert decode_in_chunks([b"\xef\xbb", b":\ndata: a\n\n"]) == [ServerSentEvent("a")]


def test_utf8_split_inside_a_character() -> None:
    stream = "data: é€😀\n\n".encode()
    for cut in range(len(stream) + 1):
        assert decode_in_chunks([stream[:cut], stream[cut:]]) == [ServerSentEvent("é€😀")]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert decode(b"data: a\xffb\xc3\n\n") == [ServerSentEvent("a\ufffdb\ufffd")]


# -- fields ------------------------------------------------------------------------------------------


def test_comments_are_ignored() -> None:
    assert decode(b":ok\n\ndata: a\n: keep-alive\ndata: b\n\n") == [ServerSentEvent("a\nb")]


def test_data_lines_are_joined_with_lf_and_the_last_lf_removed() -> None:
    assert decode(b"data: a\ndata: b\ndata\n\n") == [ServerSentEvent("a\nb\n")]
    assert decode(b"data\ndata\n\n") == [ServerSentEvent("\n")]


def test_a_field_without_colon_has_an_empty_value() -> None:
    assert decode(b"data\n\n") == [ServerSentEvent("")]
    assert decode(b"event\ndata: a\n\n") == [ServerSentEvent("a", "message")]


def test_one_space_after_the_colon_is_dropped() -> None:
    assert decode(b"data:a\n\n") == [ServerSentEvent("a")]
    assert decode(b"data:  a \n\n") == [ServerSentEvent(" a ")]
    assert decode(b"data:\tb\n\n") == [ServerSentEvent("\tb")]
    assert decode(b"data: a: b\n\n") == [ServerSentEvent("a: b")]


def test_field_names_are_exact() -> None:
    assert decode(b"Data: a\n\n") == []
    assert decode(b"data : a\n\n") == []
    assert decode(b" data: a\n\n") == []


def test_unknown_fields_are_ignored() -> None:
    assert decode(b"foo: bar\ndata: a\nfoo\n\n") == [ServerSentEvent("a")]


def test_event_type_defaults_to_message_and_does_not_carry_over() -> None:
    stream = b"event: add\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n"
    assert decode(stream) == [ServerSentEvent("1", "add"), ServerSentEvent("2"), ServerSentEvent("3")]


def test_an_empty_data_buffer_dispatches_nothing_and_resets_the_type() -> None:
    assert decode(b"event: ping\n\ndata: a\n\n") == [ServerSentEvent("a", "message")]
    assert decode(b"\n\n\n") == []


def test_the_last_event_id_persists_until_changed() -> None:
    stream = b"id: 7\ndata: a\n\ndata: b\n\nid: 8\ndata: c\n\n"
    assert [e.id for e in decode(stream)] == ["7", "7", "8"]


def test_an_empty_id_resets_the_last_event_id() -> None:
    decoder = SSEDecoder()
    stream = b"id: 7\ndata: a\n\nid\ndata: b\n\nid: 8\n\nid:\ndata: c\n\n"
    assert [e.id for e in decode(stream, decoder)] == ["7", "", ""]
    assert decoder.last_event_id == ""


def test_an_id_containing_null_is_ignored() -> None:
    assert [e.id for e in decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")] == ["1", "1"]


def test_the_last_event_id_moves_at_the_blank_line_even_without_data() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 9\n")
    assert decoder.last_event_id == ""  # only the buffer is set until the block ends
    assert decoder.feed(b"\n") == []
    assert decoder.last_event_id == "9"


def test_a_decoder_can_start_from_a_known_last_event_id() -> None:
    decoder = SSEDecoder(last_event_id="[resume]")
    assert decode(b"data: a\n\n", decoder) == [ServerSentEvent("a", id="[resume]")]


def test_retry_sets_the_reconnection_time() -> None:
    decoder = SSEDecoder()
    assert decoder.retry_ms is None
    assert decoder.feed(b"retry: 1500\ndata: a\n\ndata: b\n\n") == [
        ServerSentEvent("a", retry=1500),
        ServerSentEvent("b"),
    ]
    assert decoder.retry_ms == 1500


def test_a_retry_in_a_block_of_its_own_comes_with_the_next_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 10\n\nretry: 20\n\n") == []
    assert decoder.retry_ms == 20
    assert decoder.feed(b"data: a\n\n") == [ServerSentEvent("a", retry=20)]


@pytest.mark.parametrize("value", [b"", b" ", b"-5", b"+5", b"1.5", b"10x", b"1e3", "١٢".encode(), b"9" * 19])
def test_retry_other_than_ascii_digits_is_ignored(value: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 100\n\nretry: " + value + b"\ndata: a\n\n") == [
        ServerSentEvent("a", retry=100)
    ]
    assert decoder.retry_ms == 100


def test_finish_discards_an_event_without_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 5\nid: 1\ndata: a\n\nid: 2\ndata: b\n") == [
        ServerSentEvent("a", id="1", retry=5)
    ]
    assert decoder.finish() == []
    # The connection's state is gone; the stream's (last event ID, reconnection time) is kept.
    assert decoder.last_event_id == "1"
    assert decoder.retry_ms == 5
    assert decoder.feed(b"data: c\n\n") == [ServerSentEvent("c", id="1")]


def test_finish_discards_a_partial_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [ServerSentEvent("a")]
    assert decoder.finish() == []
    assert decoder.feed(b"\n\n") == []


# -- the recorded stream -----------------------------------------------------------------------------


def capture_fields(name: bytes) -> list[str]:
    """The values of one field, read from the capture as plain lines (it uses LF and `name: value`)."""
    prefix = name + b": "
    return [
        line[len(prefix) :].decode() for line in CAPTURE.read_bytes().split(b"\n") if line.startswith(prefix)
    ]


def test_the_capture_decodes_to_its_1950_events_with_their_ids() -> None:
    stream = CAPTURE.read_bytes()
    # The capture was saved without the blank line after its last event; the live stream sends it.
    assert stream.endswith(b"}\n")
    events = decode(stream + b"\n")

    assert len(events) == 1950
    assert {e.event for e in events} == {"message"}
    assert [e.id for e in events] == capture_fields(b"id")
    assert [e.data for e in events] == CAPTURE_LINES.read_text(encoding="utf-8").splitlines()
    assert {e.retry for e in events} == {None}


def test_the_capture_as_saved_ends_with_an_incomplete_event() -> None:
    # Per the spec an event whose blank line never came is discarded at the end of the stream.
    decoder = SSEDecoder()
    events = decode(CAPTURE.read_bytes(), decoder)
    assert len(events) == 1949
    assert [e.data for e in events] == CAPTURE_LINES.read_text(encoding="utf-8").splitlines()[:-1]
    assert decoder.last_event_id == capture_fields(b"id")[-2]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=CAPTURE.stat().st_size), max_size=200))
def test_the_capture_in_any_chunks(cuts: list[int]) -> None:
    stream = CAPTURE.read_bytes() + b"\n"
    assert decode_in_chunks(split_at(stream, cuts)) == decode(stream)


# -- any stream, any chunking ------------------------------------------------------------------------

# Values without line ends; non-ASCII text so that chunks split UTF-8 sequences.
values = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=12)
field_lines = st.one_of(
    st.builds(lambda v: f"data: {v}", values),
    st.builds(lambda v: f"data:{v}", values),
    st.just("data"),
    st.builds(lambda v: f"event: {v}", values),
    st.builds(lambda v: f"id: {v}", values),
    st.just("id"),
    st.builds(lambda v: f"retry: {v}", st.integers(0, 10**6).map(str) | values),
    st.builds(lambda v: f":{v}", values),
    st.builds(lambda v: f"{v}: x", values),
    st.just(""),
)


@st.composite
def lf_streams(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(field_lines, max_size=30))
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + "".join(line + "\n" for line in lines)).encode()


@settings(max_examples=300, deadline=None)
@given(lf_streams(), st.data())
def test_any_chunking_gives_the_same_events(stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert decode_in_chunks(split_at(stream, cuts)) == decode(stream)


@settings(max_examples=300, deadline=None)
@given(lf_streams(), st.sampled_from([b"\r\n", b"\r"]), st.data())
def test_any_line_end_and_chunking_gives_the_same_events(
    stream: bytes, line_end: bytes, data: st.DataObject
) -> None:
    rewritten = stream.replace(b"\n", line_end)
    cuts = data.draw(st.lists(st.integers(0, len(rewritten)), max_size=20))
    assert decode_in_chunks(split_at(rewritten, cuts)) == decode(stream)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_any_bytes_decode_without_error(chunks: list[bytes]) -> None:
    events = decode_in_chunks(chunks)
    assert events == decode(b"".join(chunks))
    for event in events:
        assert event.event
        assert "\n" not in event.event
        assert "\r" not in event.event
