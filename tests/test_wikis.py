"""The wiki catalog: resolving what users type, naming every wiki of the real captures, autocomplete."""

from __future__ import annotations

import functools
import json
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from teston.core.wikis import UnknownWiki, Wiki, WikiCatalog, default_catalog, resolve_wiki, unlisted_wiki

DATA_DIR = Path(__file__).parent / "data"
CAPTURES = sorted(DATA_DIR.glob("*.jsonl"))


@pytest.fixture(scope="module")
def catalog() -> WikiCatalog:
    return WikiCatalog.load()


@functools.cache
def capture_pairs() -> frozenset[tuple[str, str]]:
    """Every distinct (server_name, wiki) pair of the recorded events."""
    pairs = set()
    for path in CAPTURES:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                event = json.loads(line)
                pairs.add((event["server_name"], event["wiki"]))
    return frozenset(pairs)


# --- resolve -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "dbname"),
    [
        ("en", "enwiki"),
        ("EN", "enwiki"),
        (" en ", "enwiki"),
        ("enwiki", "enwiki"),
        ("en.wikipedia.org", "enwiki"),
        ("en.wikipedia", "enwiki"),
        ("https://en.wikipedia.org/wiki/Main_Page", "enwiki"),
        ("https://en.m.wikipedia.org/wiki/Main_Page", "enwiki"),
        ("//en.wikipedia.org/wiki/Main_Page", "enwiki"),
        ("en.wikipedia.org/wiki/Main_Page", "enwiki"),
        ("English", "enwiki"),
        ("simple", "simplewiki"),
        ("Simple English", "simplewiki"),
        ("zh-min-nan", "zh_min_nanwiki"),
        ("zh_min_nan", "zh_min_nanwiki"),
        ("zh_min_nanwiki", "zh_min_nanwiki"),
        ("be-tarask", "be_x_oldwiki"),
        ("be-tarask.wikipedia.org", "be_x_oldwiki"),
        ("be_x_old", "be_x_oldwiki"),
        ("be-x-old", "be_x_oldwiki"),
        ("be_x_oldwiki", "be_x_oldwiki"),
        ("zh-yue", "zh_yuewiki"),
        ("zh-classical", "zh_classicalwiki"),
        ("roa-rup", "roa_rupwiki"),
        ("nds-nl", "nds_nlwiki"),
        ("bat-smg", "bat_smgwiki"),
        ("fiu-vro", "fiu_vrowiki"),
        ("als", "alswiki"),
        ("cbk-zam", "cbk_zamwiki"),
        ("map-bms", "map_bmswiki"),
        ("wikidata", "wikidatawiki"),
        ("www.wikidata.org", "wikidatawiki"),
        ("https://www.wikidata.org/wiki/Q42", "wikidatawiki"),
        ("commons", "commonswiki"),
        ("commons.wikimedia.org", "commonswiki"),
        ("Wikimedia Commons", "commonswiki"),
        ("meta", "metawiki"),
        ("metawiki", "metawiki"),
        ("mediawiki", "mediawikiwiki"),
        ("www.mediawiki.org", "mediawikiwiki"),
        ("species", "specieswiki"),
        ("wikispecies", "specieswiki"),
        ("incubator", "incubatorwiki"),
        ("en.wiktionary", "enwiktionary"),
        ("enwiktionary", "enwiktionary"),
        ("en.wiktionary.org", "enwiktionary"),
        ("de.wikisource.org", "dewikisource"),
        ("yue.wiktionary", "yuewiktionary"),
        ("nl.wikimedia", "nlwikimedia"),
        ("test.wikipedia.org", "testwiki"),
        ("wikisource.org", "sourceswiki"),
    ],
)
def test_resolve_accepts_every_spelling(catalog: WikiCatalog, text: str, dbname: str) -> None:
    assert catalog.resolve(text).dbname == dbname


def test_resolved_wikis_carry_their_catalog_fields(catalog: WikiCatalog) -> None:
    assert catalog.resolve("en") == Wiki("enwiki", "en.wikipedia.org", "wikipedia", "en", "English Wikipedia")
    assert catalog.resolve("be-tarask") == Wiki(
        "be_x_oldwiki",
        "be-tarask.wikipedia.org",
        "wikipedia",
        "be-tarask",
        "Belarusian (Taraškievica orthography) Wikipedia",
    )
    assert catalog.resolve("zh-min-nan").name == "Chinese (Min Nan) Wikipedia"
    assert catalog.resolve("wikidata") == Wiki(
        "wikidatawiki", "www.wikidata.org", "wikidata", None, "Wikidata"
    )
    assert catalog.resolve("commons") == Wiki(
        "commonswiki", "commons.wikimedia.org", "commons", None, "Wikimedia Commons"
    )
    assert catalog.resolve("en.wiktionary") == Wiki(
        "enwiktionary", "en.wiktionary.org", "wiktionary", "en", "English Wiktionary"
    )


@pytest.mark.parametrize(
    ("dbname", "label"),
    [
        ("enwiki", "en"),
        ("simplewiki", "simple"),
        ("be_x_oldwiki", "be-tarask"),
        ("enwiktionary", "en.wiktionary"),
        ("dewikisource", "de.wikisource"),
        ("wikidatawiki", "wikidata"),
        ("testwikidatawiki", "test.wikidata"),
        ("commonswiki", "commons"),
        ("metawiki", "meta"),
        ("mediawikiwiki", "mediawiki"),
        ("specieswiki", "species"),
        ("incubatorwiki", "incubator"),
        ("nlwikimedia", "nl.wikimedia"),
        ("testwiki", "test.wikipedia"),
        ("sourceswiki", "wikisource"),
    ],
)
def test_label_is_what_users_type(catalog: WikiCatalog, dbname: str, label: str) -> None:
    wiki = catalog.by_dbname(dbname)
    assert wiki is not None
    assert wiki.label == label


@pytest.mark.parametrize(
    "variant", ["zh-hans", "zh-hant", "zh-cn", "zh-tw", "zh-hk", "zh-sg", "zh-mo", "zh-my", "ZH-Hant"]
)
def test_chinese_variants_are_the_chinese_wikipedia(catalog: WikiCatalog, variant: str) -> None:
    assert catalog.resolve(variant).dbname == "zhwiki"


@pytest.mark.parametrize(
    ("variant", "dbname"),
    [
        ("sr-ec", "srwiki"),
        ("sr-el", "srwiki"),
        ("sr-cyrl", "srwiki"),
        ("sr-latn", "srwiki"),
        ("kk-latn", "kkwiki"),
        ("kk-cyrl", "kkwiki"),
        ("ku-arab", "kuwiki"),
        ("zh-tw.wikipedia.org", "zhwiki"),
        ("sr-el.wiktionary", "srwiktionary"),
        ("zh-hans.wikisource", "zhwikisource"),
    ],
)
def test_other_variants_are_their_base_wiki(catalog: WikiCatalog, variant: str, dbname: str) -> None:
    assert catalog.resolve(variant).dbname == dbname


@pytest.mark.parametrize(
    ("alias", "dbname"),
    [
        ("nb", "nowiki"),
        ("nb.wiktionary", "nowiktionary"),
        ("lzh", "zh_classicalwiki"),
        ("nan", "zh_min_nanwiki"),
        ("gsw", "alswiki"),
        ("sgs", "bat_smgwiki"),
        ("yue", "zh_yuewiki"),  # no Cantonese Wikipedia under "yue": the alias applies
        ("mo", "rowiki"),  # the Moldovan Wikipedia was closed in favour of the Romanian one
    ],
)
def test_renamed_and_iso_codes_are_aliases(catalog: WikiCatalog, alias: str, dbname: str) -> None:
    assert catalog.resolve(alias).dbname == dbname


def test_every_wiki_resolves_by_its_label_dbname_and_host(catalog: WikiCatalog) -> None:
    for wiki in catalog:
        assert catalog.resolve(wiki.label) is wiki
        assert catalog.resolve(wiki.dbname) is wiki
        assert catalog.resolve(wiki.server_name) is wiki


# --- unknown text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "suggestions"),
    [
        ("enn", ("en", "nn", "ann")),
        ("simpel", ("simple",)),
        ("zh-min-na", ("zh-min-nan",)),
        ("comons", ("commons", "mos", "test-commons")),
        ("wikidat", ("wikidata", "test.wikidata", "wikitech")),
        ("en.wikitionary", ("en.wiktionary", "el.wiktionary", "eo.wiktionary")),
        ("fr-ca", ()),
    ],
)
def test_unknown_text_suggests_the_closest_labels(
    catalog: WikiCatalog, text: str, suggestions: tuple[str, ...]
) -> None:
    with pytest.raises(UnknownWiki) as raised:
        catalog.resolve(text)
    assert raised.value.query == text
    assert raised.value.suggestions == suggestions


def test_unknown_wiki_message_names_the_query_and_suggestions(catalog: WikiCatalog) -> None:
    with pytest.raises(UnknownWiki) as raised:
        catalog.resolve("enn")
    assert str(raised.value) == "unknown language 'enn' — did you mean 'en', 'nn', 'ann'?"
    assert isinstance(raised.value, ValueError)
    with pytest.raises(UnknownWiki) as raised:
        catalog.resolve("fr-ca")
    assert str(raised.value) == "unknown language 'fr-ca'"


def test_unknown_wiki_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(UnknownWiki("enn", ("en",))))  # noqa: S301 (our own bytes)
    assert (error.query, error.suggestions, str(error)) == (
        "enn",
        ("en",),
        "unknown language 'enn' — did you mean 'en'?",
    )


@pytest.mark.parametrize(
    "text",
    ["", "   ", "x" * 5000, "!!!", "http://[::1", "https://", "\x00", "en\nwiki", "en.", ".", "a.b.c.d", "ü"],
)
def test_garbage_raises_unknown_wiki_only(catalog: WikiCatalog, text: str) -> None:
    with pytest.raises(UnknownWiki) as raised:
        catalog.resolve(text)
    assert len(raised.value.query) <= 100


@pytest.mark.parametrize("value", [None, 42, b"en", ["en"]])
def test_non_text_raises_unknown_wiki(catalog: WikiCatalog, value: object) -> None:
    with pytest.raises(UnknownWiki):
        catalog.resolve(value)  # type: ignore[arg-type]


# --- events --------------------------------------------------------------------------------------


def test_captures_are_present() -> None:
    assert [path.name for path in CAPTURES] == [
        "2018-03-07_wikidata_3818_old-shape.jsonl",
        "2021-08-27_all-wikis_1950.jsonl",
        "2023-07-29_enwiki_100.jsonl",
        "2025-05-03_sample_144.jsonl",
    ]
    assert len(capture_pairs()) == 77


def test_every_captured_wiki_is_listed_and_resolves_to_its_dbname(catalog: WikiCatalog) -> None:
    for server_name, dbname in sorted(capture_pairs()):
        listed = catalog.by_dbname(dbname)
        assert listed is not None, dbname
        assert listed.server_name == server_name
        assert catalog.for_event(server_name, dbname) is listed
        assert catalog.for_event(server_name, None) is listed
        assert catalog.for_event(None, dbname) is listed
        assert catalog.resolve(server_name) is listed


def test_captured_non_wikipedias_keep_their_project(catalog: WikiCatalog) -> None:
    projects = {
        dbname: catalog.for_event(server, dbname).project
        for server, dbname in capture_pairs()
        if not dbname.endswith("wiki")
    }
    assert projects == {
        "aswikisource": "wikisource",
        "enwikibooks": "wikibooks",
        "enwikisource": "wikisource",
        "enwikivoyage": "wikivoyage",
        "enwiktionary": "wiktionary",
        "frwikisource": "wikisource",
        "frwiktionary": "wiktionary",
        "jawiktionary": "wiktionary",
        "jvwikisource": "wikisource",
        "mgwiktionary": "wiktionary",
        "plwikinews": "wikinews",
        "plwikisource": "wikisource",
        "ptwikinews": "wikinews",
        "ruwikinews": "wikinews",
        "ruwiktionary": "wiktionary",
        "svwiktionary": "wiktionary",
        "ukwikibooks": "wikibooks",
        "viwikibooks": "wikibooks",
        "zhwikiquote": "wikiquote",
    }
    for dbname, project in [
        ("wikidatawiki", "wikidata"),
        ("commonswiki", "commons"),
        ("metawiki", "meta"),
        ("specieswiki", "species"),
        ("mediawikiwiki", "mediawiki"),
        ("incubatorwiki", "incubator"),
    ]:
        wiki = catalog.by_dbname(dbname)
        assert wiki is not None
        assert (wiki.project, wiki.code) == (project, None)


def test_unknown_server_is_described_by_the_event(catalog: WikiCatalog) -> None:
    assert catalog.for_event("xx.wikipedia.org", "xxwiki") == Wiki(
        "xxwiki", "xx.wikipedia.org", "wikipedia", "xx", "xx Wikipedia"
    )
    assert catalog.for_event("xx.wikipedia.org", "xxwiki").label == "xx"
    assert catalog.for_event("xx.wiktionary.org", "xxwiktionary") == Wiki(
        "xxwiktionary", "xx.wiktionary.org", "wiktionary", "xx", "xx Wiktionary"
    )
    assert catalog.for_event("xx.wikimedia.org", "xxwikimedia") == Wiki(
        "xxwikimedia", "xx.wikimedia.org", "wikimedia", None, "xx.wikimedia.org"
    )
    assert catalog.for_event("wiki.example.net", "examplewiki") == Wiki(
        "examplewiki", "wiki.example.net", "other", None, "wiki.example.net"
    )
    assert catalog.for_event(None, "newwikiwiki") == Wiki("newwikiwiki", "", "other", None, "newwikiwiki")
    assert catalog.for_event(None, None) == Wiki("", "", "other", None, "unknown wiki")


def test_the_database_name_decides_over_the_host(catalog: WikiCatalog) -> None:
    # A renamed domain still names the same database.
    assert catalog.for_event("lzh.wikipedia.org", "zh_classicalwiki").dbname == "zh_classicalwiki"
    # A database the catalog does not know is not folded into the host's listed wiki.
    assert catalog.for_event("en.wikipedia.org", "enwiki_new").dbname == "enwiki_new"


def test_for_event_never_raises_on_malformed_fields(catalog: WikiCatalog) -> None:
    assert catalog.for_event(["en.wikipedia.org"], {"wiki": 1}).project == "other"  # type: ignore[arg-type]
    assert catalog.for_event(42, 42).dbname == ""  # type: ignore[arg-type]
    assert unlisted_wiki("", "").name == "unknown wiki"


# --- search --------------------------------------------------------------------------------------


def labels(wikis: list[Wiki]) -> list[str]:
    return [wiki.label for wiki in wikis]


def test_search_lists_wikipedias_first_then_by_relevance(catalog: WikiCatalog) -> None:
    assert labels(catalog.search("en", 12)) == [
        "en",  # the code itself
        "ang",  # then Wikipedias whose language has a word starting with "en" ("Old English")
        "gpe",
        "jam",
        "simple",
        "en.wikibooks",  # then the other projects
        "en.wikiquote",
        "en.wikisource",
        "en.wikivoyage",
        "en.wiktionary",
        "en.wikiversity",
        "en.wikinews",  # closed wikis after open ones
    ]


def test_search_matches_language_names(catalog: WikiCatalog) -> None:
    assert labels(catalog.search("chin", 7)) == [
        "zh",
        "zh-min-nan",
        "cdo",
        "gan",
        "hak",
        "wuu",
        "zh-classical",
    ]
    assert labels(catalog.search("Simple", 3)) == ["simple", "simple.wiktionary", "simple.wikibooks"]


def test_search_finds_special_wikis(catalog: WikiCatalog) -> None:
    assert labels(catalog.search("wiki", 5)) == [
        "wikidata",
        "wikitech",
        "wikimania",
        "wikisource",
        "wikifunctions",
    ]
    assert labels(catalog.search("commons")) == ["commons", "test-commons"]


def test_search_understands_variants_and_urls(catalog: WikiCatalog) -> None:
    assert labels(catalog.search("zh-hans")) == ["zh"]
    assert labels(catalog.search("https://de.wikipedia.org/wiki/Berlin")) == ["de"]


def test_search_limits(catalog: WikiCatalog) -> None:
    assert labels(catalog.search("", 3)) == ["ab", "ace", "ady"]
    assert len(catalog.search("")) == 25
    assert catalog.search("en", 0) == []
    assert catalog.search("zzzzzz") == []
    assert catalog.search("x" * 5000) == []


# --- the shipped table ---------------------------------------------------------------------------


def test_catalog_covers_every_project(catalog: WikiCatalog) -> None:
    wikis = list(catalog)
    assert len(catalog) == len(wikis) == 1028
    assert len({wiki.dbname for wiki in wikis}) == len(wikis)
    assert len({wiki.server_name for wiki in wikis}) == len(wikis)
    assert len({wiki.label for wiki in wikis}) == len(wikis)
    editions = Counter(wiki.project for wiki in wikis if wiki.code)
    assert editions == {
        "wikipedia": 364,
        "wiktionary": 198,
        "wikibooks": 122,
        "wikiquote": 100,
        "wikisource": 84,
        "wikinews": 36,
        "wikivoyage": 28,
        "wikiversity": 17,
    }


def test_catalog_is_loaded_only_when_asked_for() -> None:
    probe = "import teston.core.wikis as w; print(w.default_catalog.cache_info().currsize)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0"


def test_default_catalog_is_shared() -> None:
    assert default_catalog() is default_catalog()
    assert resolve_wiki("zh-hant") is default_catalog().by_dbname("zhwiki")
