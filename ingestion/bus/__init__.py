"""The durable event bus between the stream and PostgreSQL: `teston ingest` publishes, `teston sink` stores.

`naming` holds the pure vocabulary (bus URLs, stream, subject, topic and consumer names); `publisher` is the
ingester's side (a batch committer that publishes instead of writing rows); `sink` is the consumer's side
(bus → COPY writer → acknowledge); `jetstream` and `kafka` are the two engines behind one small seam.
"""
