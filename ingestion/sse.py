"""Server-sent events: the bytes of a `text/event-stream` response, decoded into events.

Implements "Parsing an event stream" and "Interpreting an event stream" of the WHATWG HTML Living
Standard, §9.2.5-9.2.6 (https://html.spec.whatwg.org/multipage/server-sent-events.html). Pure: the HTTP
client feeds it the chunks it receives, in whatever sizes they arrive, and gets the dispatched events back.

Reconnection time: `SSEDecoder.retry_ms` is the stream's reconnection time, the value of the last valid
`retry:` field, kept across events and connections. In addition, each event carries in `retry` the last
valid `retry:` value received since the previous dispatched event (or `None`), so that a consumer that only
looks at events still sees a `retry:` sent in a block of its own.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SSEDecoder", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"
_CR = 0x0D
_LF = 0x0A
# A reconnection time needs at most 18 digits to fit in a signed 64-bit integer; a longer one is no
# reconnection time anyone can wait for, and converting thousands of digits would be slow.
_MAX_RETRY_DIGITS = 18


class ServerSentEvent(NamedTuple):
    """One dispatched event (a named tuple: made once per event, cheaper than a frozen dataclass)."""

    data: str
    event: str = "message"
    # The last event ID string when the event was dispatched: the latest `id:` so far, not necessarily
    # one sent in this event's own block (per the spec the ID persists until the server changes it).
    id: str = ""
    # The last valid `retry:` received since the previous dispatched event, in milliseconds.
    retry: int | None = None


class SSEDecoder:
    """Incremental `text/event-stream` decoder: `feed` bytes as they arrive, `finish` at end of stream.

    `last_event_id` is what to send as `Last-Event-ID` when reconnecting; `retry_ms` the reconnection
    time the server asked for, if any. Both survive `finish`, so one decoder can serve the successive
    connections of one stream (as browsers seed a new connection's parser with the last event ID).
    """

    __slots__ = (
        "_after_cr",
        "_at_start",
        "_data",
        "_event_type",
        "_head",
        "_id_buffer",
        "_partial_line",
        "_pending_retry",
        "last_event_id",
        "retry_ms",
    )

    def __init__(self, last_event_id: str = "") -> None:
        # The spec's "last event ID string" of the event source: updated each time an event is dispatched
        # (even one with no data), from the "last event ID buffer" that `id:` fields set.
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self._start_connection()

    def _start_connection(self) -> None:
        self._partial_line: list[bytes] = []  # bytes of a line whose end has not arrived yet
        self._after_cr = False  # the last line end seen was a CR: a LF right after it belongs to it
        self._at_start = True  # a byte order mark is only skipped at the very start of the stream
        self._head = b""  # the first bytes, held back while they could still be a split BOM
        self._data: list[bytes] = []  # the data buffer, one item per `data:` line, not yet decoded
        self._event_type = ""
        self._id_buffer = self.last_event_id
        self._pending_retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events dispatched by the lines this chunk completes."""
        if self._at_start:
            chunk = self._skip_bom(chunk)
        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == _LF:  # the second half of a CRLF split across chunks
                chunk = chunk[1:]
                if not chunk:
                    return []

        end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if end < 0:
            self._partial_line.append(chunk)
            return []
        # Everything up to the last line end is whole lines; the rest waits for its line end.
        stop = end
        if chunk[end] == _CR:
            self._after_cr = True
        elif end and chunk[end - 1] == _CR:
            stop = end - 1
        lines = chunk[:stop]
        rest = chunk[end + 1 :]
        if self._partial_line:
            self._partial_line.append(lines)
            lines = b"".join(self._partial_line)
            self._partial_line = []
        if rest:
            self._partial_line.append(rest)
        # Per §9.2.5 a line ends at CRLF, LF or CR; fold all three into LF, then split once.
        if b"\r" in lines:
            lines = lines.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return self._interpret(lines.split(b"\n"))

    def finish(self) -> list[ServerSentEvent]:
        """End of the stream: per §9.2.6 an event whose blank line never came is discarded, not dispatched."""
        self._start_connection()
        return []

    def _skip_bom(self, chunk: bytes) -> bytes:
        # Per §9.2.5 one leading U+FEFF is ignored; it may arrive split across the first chunks.
        head = self._head + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._head = head
            return b""
        self._at_start = False
        self._head = b""
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _interpret(self, lines: list[bytes]) -> list[ServerSentEvent]:
        # Lines stay bytes until a value is kept: line ends, colons, spaces and field names are ASCII, and
        # never part of a UTF-8 sequence, so splitting before decoding finds the same lines and fields, and
        # decoding each kept value is the stream's UTF-8 decode (invalid bytes become U+FFFD, as the spec's
        # decoder does). Most of a chunk is `data:` text, decoded once per event, never as a whole chunk.
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            # The three lines EventStreams sends with every event skip the general parsing below, to the
            # same effect.
            if line.startswith(b"data: "):
                data.append(line[6:])
                continue
            if line.startswith(b"id: "):
                value = line[4:]
                if b"\0" not in value:
                    self._id_buffer = value.decode("utf-8", "replace")
                continue
            if line == b"event: message":
                self._event_type = "message"
                continue
            if not line:
                # A blank line dispatches. Per §9.2.6 the last event ID string is updated even when
                # there is no data, and an empty data buffer dispatches nothing.
                self.last_event_id = self._id_buffer
                if data:
                    events.append(
                        ServerSentEvent(
                            # the data lines joined, without the final LF
                            b"\n".join(data).decode("utf-8", "replace"),
                            self._event_type or "message",
                            self.last_event_id,
                            self._pending_retry,
                        )
                    )
                    data = self._data = []
                    self._pending_retry = None
                self._event_type = ""
                continue
            colon = line.find(b":")
            if colon == 0:  # a comment, such as EventStreams' `:ok`
                continue
            if colon < 0:  # a field name alone: its value is the empty string
                name, value = line, b""
            else:
                name = line[:colon]
                # One space after the colon is not part of the value.
                value = line[colon + 2 :] if line.startswith(b" ", colon + 1) else line[colon + 1 :]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._event_type = value.decode("utf-8", "replace")
            elif name == b"id":
                # An id containing NULL is ignored; an empty one resets the last event ID.
                if b"\0" not in value:
                    self._id_buffer = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:
                # Only ASCII digits are a reconnection time (`bytes.isdigit` knows no others); any other
                # value is ignored.
                self.retry_ms = self._pending_retry = int(value)
            # Any other field name is ignored.
        return events
