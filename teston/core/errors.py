"""The one exception base of TestON, and a subclass for each part.

A `TestonError` is a situation to explain, not a fault to debug: its message is one line saying what
happened and, where it can, what to do. The CLI prints it as `teston: <message>` without a traceback.
Each part raises its own subclasses (defined beside the code that raises them) of the classes here.
"""

from __future__ import annotations


class TestonError(Exception):
    """A failure TestON reports as one line, naming what happened."""

    __test__ = False  # not a test class, whatever pytest's `Test*` pattern says


class ConfigurationError(TestonError):
    """A setting cannot work as given; the message names the variable."""


class DatabaseError(TestonError):
    """PostgreSQL (the embedded server or the configured one) cannot be used as TestON needs it."""


class IngestionError(TestonError):
    """The ingester stopped without losing anything: what was not committed is resumed on the next run."""


class AnalyticsError(TestonError):
    """An export or a roll-up could not be made; what was there before is untouched."""


class BotError(TestonError):
    """The Discord bot cannot run as configured."""


class NotStarted(TestonError):
    """A component was waited on before it was started."""
