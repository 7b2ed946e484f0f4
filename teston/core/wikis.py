"""Which Wikimedia wiki a user's text or an event's fields mean.

In TestON a "language" is a wiki: `en` is en.wikipedia.org (database `enwiki`). The catalog is the table
shipped in `teston/core/data/wikis.csv` (every language edition of the multilingual projects plus the
special wikis) and the code aliases in `teston/core/data/wiki_aliases.csv`; see
`teston/core/data/README.md` for where they come from. Nothing here touches the network, and nothing is
loaded until a catalog is asked for.

Codes are never cut out of database or host names by length: database names do not follow the codes
(`be-tarask` is `be_x_oldwiki`, Wikidata is `wikidatawiki` on www.wikidata.org), so every mapping is a
table lookup, and host names are only ever split into their dot-separated labels.
"""

from __future__ import annotations

import csv
import difflib
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple, Self
from urllib.parse import urlsplit

__all__ = ["UnknownWiki", "Wiki", "WikiCatalog", "default_catalog", "resolve_wiki"]

# Projects with one wiki per language, and how their names read.
LANGUAGE_PROJECT_TITLES = {
    "wikipedia": "Wikipedia",
    "wiktionary": "Wiktionary",
    "wikibooks": "Wikibooks",
    "wikinews": "Wikinews",
    "wikiquote": "Wikiquote",
    "wikisource": "Wikisource",
    "wikiversity": "Wikiversity",
    "wikivoyage": "Wikivoyage",
}

# Long enough for a pasted article URL; anything longer is not a way of naming a wiki.
MAX_QUERY_LENGTH = 2048
# difflib compares every candidate; past this length no wiki name is close anyway.
MAX_SUGGESTION_QUERY_LENGTH = 64
MAX_SUGGESTIONS = 3
# Shown in messages instead of the whole text when someone pastes a novel.
MAX_QUERY_ECHO = 100

_WORD_SEPARATOR = re.compile(r"[^\w]+")


@dataclass(frozen=True, slots=True)
class Wiki:
    """One wiki: its database name (the stream's `wiki` field), host, project and language code."""

    dbname: str
    server_name: str
    project: str
    code: str | None
    name: str

    @property
    def label(self) -> str:
        """What users see and type: `en`, `en.wiktionary`, `wikidata`, `commons`, `nl.wikimedia`."""
        if self.code:
            return self.code if self.project == "wikipedia" else f"{self.code}.{self.project}"
        labels = self.server_name.split(".") if self.server_name else []
        if labels[-1:] == ["org"]:
            labels.pop()
        if labels[:1] == ["www"]:
            labels.pop(0)
        # commons.wikimedia.org is "commons", but a chapter (project "wikimedia") keeps the suffix:
        # nl.wikimedia.org must not read as Dutch.
        if len(labels) > 1 and labels[-1] == "wikimedia" and self.project != "wikimedia":
            labels.pop()
        return ".".join(labels) or self.dbname


class UnknownWiki(ValueError):
    """No wiki answers to the text; `suggestions` holds up to three labels that nearly match."""

    def __init__(self, query: str, suggestions: Iterable[str] = ()) -> None:
        self.query = query
        self.suggestions = tuple(suggestions)
        super().__init__(query, self.suggestions)

    def __str__(self) -> str:
        message = f"unknown language {self.query!r}"
        if self.suggestions:
            message += " — did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        return message


class _SearchEntry(NamedTuple):
    group: int  # 0 for language Wikipedias, which autocomplete lists first
    closed: bool
    label: str
    code: str
    dbname: str
    name: str
    language: str
    words: tuple[str, ...]
    wiki: Wiki


class WikiCatalog:
    """A lookup table of wikis by database name, host, label, code alias and English name.

    Built from the wikis, `aliases` (extra code → wiki code: variants, renamed codes), `languages`
    (dbname → the language's English name) and `closed` (dbnames of read-only wikis).
    """

    def __init__(
        self,
        wikis: Iterable[Wiki],
        aliases: Mapping[str, str] | None = None,
        *,
        languages: Mapping[str, str] | None = None,
        closed: Iterable[str] = (),
    ) -> None:
        self._wikis = tuple(wikis)
        self._aliases = {alias.lower(): code for alias, code in (aliases or {}).items()}
        languages = languages or {}
        closed_dbnames = frozenset(closed)
        self._by_dbname = {wiki.dbname: wiki for wiki in self._wikis}
        self._by_server = {wiki.server_name: wiki for wiki in self._wikis}
        self._by_code = {(wiki.code, wiki.project): wiki for wiki in self._wikis if wiki.code}

        # Open wikis first, so that a name shared with a closed wiki means the open one.
        ordered = sorted(self._wikis, key=lambda wiki: wiki.dbname in closed_dbnames)
        # Earlier kinds of key win over later ones when two wikis share a spelling.
        key_kinds: list[Callable[[Wiki], Iterable[str]]] = [
            lambda wiki: (wiki.label,),
            lambda wiki: (wiki.dbname, wiki.server_name),
            lambda wiki: _host_spellings(wiki.server_name),
            lambda wiki: (wiki.name,),
            # "German" means the German Wikipedia, not the German Wiktionary.
            lambda wiki: (languages.get(wiki.dbname, ""),) if wiki.project == "wikipedia" else (),
        ]
        self._lookup: dict[str, Wiki] = {}
        for keys_of in key_kinds:
            for wiki in ordered:
                for key in keys_of(wiki):
                    if key:
                        self._lookup.setdefault(key.lower(), wiki)

        # Suggestions are what users should type: Wikipedia codes and the labels of special wikis;
        # a dotted query ("en.wikitionary") is compared with every label and host spelling.
        self._suggestion_pool = sorted(
            {wiki.label for wiki in self._wikis if wiki.project == "wikipedia" or not wiki.code}
        )
        self._dotted_suggestion_pool = sorted(
            {wiki.label for wiki in self._wikis}
            | {spelling for wiki in self._wikis for spelling in _host_spellings(wiki.server_name)}
        )

        self._search_entries = sorted(
            (
                _SearchEntry(
                    group=0 if wiki.project == "wikipedia" and wiki.code else 1,
                    closed=wiki.dbname in closed_dbnames,
                    label=wiki.label.lower(),
                    code=(wiki.code or "").lower(),
                    dbname=wiki.dbname.lower(),
                    name=wiki.name.lower(),
                    language=languages.get(wiki.dbname, "").lower(),
                    # Words of the language's name ("chinese" in "Min Dong Chinese"), not of the
                    # project's, or "wiki" would list every Wikipedia before Wikidata.
                    words=tuple(
                        word
                        for word in _WORD_SEPARATOR.split(languages.get(wiki.dbname, wiki.name).lower())
                        if word
                    ),
                    wiki=wiki,
                )
                for wiki in self._wikis
            ),
            key=lambda entry: (entry.group, entry.closed, entry.label),
        )

    @classmethod
    def load(cls) -> Self:
        """The catalog shipped with the package (`teston/core/data/*.csv`)."""
        data = resources.files("teston.core").joinpath("data")
        wikis, languages, closed = parse_wiki_table(
            data.joinpath("wikis.csv").read_text(encoding="utf-8").splitlines()
        )
        aliases = parse_alias_table(
            data.joinpath("wiki_aliases.csv").read_text(encoding="utf-8").splitlines()
        )
        return cls(wikis, aliases, languages=languages, closed=closed)

    def __iter__(self) -> Iterator[Wiki]:
        return iter(self._wikis)

    def __len__(self) -> int:
        return len(self._wikis)

    def __repr__(self) -> str:
        return f"<WikiCatalog of {len(self._wikis)} wikis>"

    def by_dbname(self, dbname: str) -> Wiki | None:
        """The wiki with this database name (the stream's `wiki` field), if listed."""
        return self._by_dbname.get(dbname)

    def for_event(self, server_name: str | None, dbname: str | None) -> Wiki:
        """The wiki of one stream event; never raises, and unlisted wikis are built from the fields."""
        # Called for every event of the live stream and of replays: plain dict lookups only.
        try:
            wiki = self._by_dbname.get(dbname) if dbname else None
            if wiki is not None:
                return wiki
            # The database name is the event's identity; the host only speaks when it is missing.
            if not dbname:
                wiki = self._by_server.get(server_name) if server_name else None
                if wiki is not None:
                    return wiki
        except TypeError:  # an unhashable value from a malformed event
            pass
        return unlisted_wiki(server_name, dbname)

    def resolve(self, text: str) -> Wiki:
        """The wiki meant by a code, label, dbname, host, URL or English name; else `UnknownWiki`."""
        if not isinstance(text, str):
            raise UnknownWiki(repr(text)[:MAX_QUERY_ECHO])
        stripped = text.strip()
        query = stripped.lower()
        if not query or len(query) > MAX_QUERY_LENGTH:
            raise UnknownWiki(stripped[:MAX_QUERY_ECHO])
        wiki = self._find(query)
        if wiki is None:
            raise UnknownWiki(stripped[:MAX_QUERY_ECHO], self._suggest(query))
        return wiki

    def search(self, prefix: str, limit: int = 25) -> list[Wiki]:
        """Wikis whose code, label, dbname or name start with `prefix`, best first, for autocomplete."""
        # Language Wikipedias come first, then the other wikis; within each, exact matches, then
        # label or code prefixes, name prefixes, prefixes of a word of the language's name, and
        # database name prefixes; open wikis before closed ones, short labels before long.
        if not isinstance(prefix, str) or limit <= 0:
            return []
        query = prefix.strip().lower()
        if len(query) > MAX_QUERY_LENGTH:
            return []
        if not query:
            return [entry.wiki for entry in self._search_entries[:limit]]
        resolved = self._find(query)  # an alias, variant or URL names one wiki exactly
        ranked = []
        for entry in self._search_entries:
            tier = 0 if entry.wiki is resolved else _match_tier(query, entry)
            if tier is not None:
                ranked.append(((entry.group, tier, entry.closed, len(entry.label), entry.label), entry.wiki))
        ranked.sort(key=lambda item: item[0])
        return [wiki for _, wiki in ranked[:limit]]

    def _find(self, query: str) -> Wiki | None:
        wiki = self._lookup.get(query)
        if wiki is not None:
            return wiki
        host = _host_of(query)
        if host is None:
            return None
        # Database-style spellings ("be_x_old", "zh_min_nan") use underscores where codes use hyphens.
        labels = host.replace("_", "-").split(".")
        if labels[-1] == "org":
            labels.pop()
        if labels[:1] in (["www"], ["m"]):
            labels.pop(0)
        if len(labels) == 3 and labels[1] in ("m", "zero"):  # en.m.wikipedia.org: the mobile site
            del labels[1]
        if not 1 <= len(labels) <= 2:
            return None
        wiki = self._lookup.get(".".join(labels))
        if wiki is not None:
            return wiki
        code, project = (labels[0], "wikipedia") if len(labels) == 1 else (labels[0], labels[1])
        wiki = self._by_code.get((code, project))
        if wiki is None and code in self._aliases:
            wiki = self._by_code.get((self._aliases[code], project))
        return wiki

    def _suggest(self, query: str) -> tuple[str, ...]:
        if len(query) > MAX_SUGGESTION_QUERY_LENGTH:
            return ()
        pool = self._dotted_suggestion_pool if "." in query else self._suggestion_pool
        matcher = difflib.SequenceMatcher()
        matcher.set_seq2(query)
        scored = []
        for label in pool:
            matcher.set_seq1(label)
            # The same cheap-bound-first filtering as difflib.get_close_matches.
            if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
                ratio = matcher.ratio()
                if ratio >= 0.6:
                    scored.append((ratio, label))
        # Among equally close labels, typos seldom change the first letter: "enn" means "en" before "nn".
        scored.sort(key=lambda item: (-item[0], item[1][:1] != query[:1], item[1]))
        return tuple(label for _, label in scored[:MAX_SUGGESTIONS])


def unlisted_wiki(server_name: str | None, dbname: str | None) -> Wiki:
    """A wiki the catalog does not list (a new wiki, a test wiki), described by the event's own fields."""
    server = server_name if isinstance(server_name, str) else ""
    database = dbname if isinstance(dbname, str) else ""
    project, code = "other", None
    labels = server.lower().split(".")
    if len(labels) == 3 and labels[2] == "org" and labels[0] not in ("", "www", "m"):
        if labels[1] in LANGUAGE_PROJECT_TITLES:
            project, code = labels[1], labels[0]
        elif labels[1] == "wikimedia":
            project = "wikimedia"
    if code is not None:
        name = f"{code} {LANGUAGE_PROJECT_TITLES[project]}"
    else:
        name = server or database or "unknown wiki"
    return Wiki(dbname=database, server_name=server, project=project, code=code, name=name)


def parse_wiki_table(rows: Iterable[str]) -> tuple[list[Wiki], dict[str, str], set[str]]:
    """Wikis, dbname → language name, and closed dbnames from the lines of `wikis.csv`."""
    wikis: list[Wiki] = []
    languages: dict[str, str] = {}
    closed: set[str] = set()
    for row in csv.DictReader(rows):
        wiki = Wiki(
            dbname=row["dbname"],
            server_name=row["server_name"],
            project=row["project"],
            code=row["code"] or None,
            name=row["name"],
        )
        wikis.append(wiki)
        if row.get("language"):
            languages[wiki.dbname] = row["language"]
        if row.get("closed") == "1":
            closed.add(wiki.dbname)
    return wikis, languages, closed


def parse_alias_table(rows: Iterable[str]) -> dict[str, str]:
    """Alias → wiki code from the lines of `wiki_aliases.csv`."""
    return {row["alias"].lower(): row["code"] for row in csv.DictReader(rows)}


@functools.cache
def default_catalog() -> WikiCatalog:
    """The shipped catalog, loaded on first use and shared afterwards."""
    return WikiCatalog.load()


def resolve_wiki(text: str) -> Wiki:
    """`default_catalog().resolve(text)`."""
    return default_catalog().resolve(text)


def _host_spellings(server_name: str) -> list[str]:
    # en.wikipedia.org is also typed "en.wikipedia"; www.wikidata.org also "wikidata.org".
    labels = server_name.split(".")
    spellings = []
    if labels[:1] == ["www"]:
        spellings.append(".".join(labels[1:]))
        labels = labels[1:]
    if labels[-1:] == ["org"] and len(labels) > 1:
        spellings.append(".".join(labels[:-1]))
    return spellings


def _host_of(query: str) -> str | None:
    """The host part of a URL or of `host/path`; other text as it is."""
    if query.startswith("//"):  # a protocol-relative link
        query = "https:" + query
    if "://" in query:
        try:
            host = urlsplit(query).hostname
        except ValueError:  # e.g. an unbalanced "[" where an IPv6 address would go
            return None
        return host or None
    return query.split("/", 1)[0] or None


def _match_tier(query: str, entry: _SearchEntry) -> int | None:
    if query in (entry.label, entry.code, entry.dbname, entry.name, entry.language):
        return 0
    if entry.label.startswith(query) or (entry.code and entry.code.startswith(query)):
        return 1
    if entry.name.startswith(query) or entry.language.startswith(query):
        return 2
    if any(word.startswith(query) for word in entry.words):
        return 3
    if entry.dbname.startswith(query):
        return 4
    return None
