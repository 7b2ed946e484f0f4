"""The team's tasks, one session each: `nox -s lint types test bench` (`nox -l` lists them).

Each session runs in its own virtualenv with `teston[test,dev]` installed, as `.ci/run` does;
`nox --no-venv -s lint` runs in the current environment instead.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "types", "test"]
nox.options.default_venv_backend = "venv"
PYTHON = "3.11"


def _install(session: nox.Session) -> None:
    # With `--no-venv` the current environment is used as it is.
    if session.venv_backend == "none":
        return
    session.install("-e", ".[test,dev]")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Formatting, lint rules and the import contract (the layering)."""
    _install(session)
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    """mypy over the four packages (strict for the pure modules, see pyproject.toml)."""
    _install(session)
    session.run("mypy")


@nox.session(python=PYTHON)
def test(session: nox.Session) -> None:
    """The README's test command; extra arguments go to pytest (`nox -s test -- -k bot -x`)."""
    _install(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks (BENCHMARKS.md); `nox -s bench -- --size smoke` for a quick run."""
    _install(session)
    session.run("python", "-m", "benchmarks", *session.posargs)
