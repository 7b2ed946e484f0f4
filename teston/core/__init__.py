"""The shared base of TestON: what ingestion, analytics, the bot and the CLI all stand on.

Settings, the database (embedded server, migrations, schema, partitions), the wiki catalog, the shared
words (statuses, editors, lock keys, errors, the bus address) and the metrics endpoint. It imports no
feature package (`ingestion`, `analytics`, `bot`) and not the CLI; `lint-imports` checks that.
"""
