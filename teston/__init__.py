"""TestON: Wikipedia's live edit stream, kept in PostgreSQL and answered in Discord."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("teston")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
