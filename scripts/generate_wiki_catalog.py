"""Regenerate `teston/core/data/wikis.csv` and `teston/core/data/wiki_aliases.csv`.

Not imported by the package: the CSVs are committed and read at run time without network.

Sources, all offline:

* the family files of Pywikibot (MIT, a PyPI package): which language codes each Wikimedia project
  has, which of them are closed (read-only) and which codes are aliases of another. They are read as
  text with `ast`, so Pywikibot itself need not be importable::

      pip download --no-deps -d /tmp/pwb pywikibot && unzip -q /tmp/pwb/pywikibot-*.whl -d /tmp/pwb

* Wikimedia's SiteMatrix API output (`action=sitematrix&format=json`), saved to a file: the English
  name of each language (`localname`). Languages it does not name fall back to `NEWER_LANGUAGE_NAMES`.

Run from the repository root::

    python scripts/generate_wiki_catalog.py --pywikibot /tmp/pwb/pywikibot --sitematrix sitematrix.json
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "teston" / "core" / "data"

# Multilingual projects: family name, database suffix, human title. Wikipedia's suffix is "wiki".
LANGUAGE_PROJECTS = (
    ("wikipedia", "wiki", "Wikipedia"),
    ("wiktionary", "wiktionary", "Wiktionary"),
    ("wikibooks", "wikibooks", "Wikibooks"),
    ("wikinews", "wikinews", "Wikinews"),
    ("wikiquote", "wikiquote", "Wikiquote"),
    ("wikisource", "wikisource", "Wikisource"),
    ("wikiversity", "wikiversity", "Wikiversity"),
    ("wikivoyage", "wikivoyage", "Wikivoyage"),
)

# The one language wiki whose database name is not its code: the Belarusian Taraškievica Wikipedia
# kept its database when its domain moved from be-x-old to be-tarask (phabricator T11823).
DBNAME_EXCEPTIONS = {("be-tarask", "wikipedia"): "be_x_oldwiki"}

# Codes listed in a language family that are not languages; they are described in SPECIAL_WIKIS.
NOT_LANGUAGES = {("ten", "wikipedia"), ("mul", "wikisource")}

# English names for editions created after the SiteMatrix snapshot the names were taken from: the CLDR /
# ISO 639-3 English names (as the `langcodes` package gives them), shortened where ISO lists a cluster.
NEWER_LANGUAGE_NAMES = {
    "ann": "Obolo",
    "anp": "Angika",
    "bbc": "Batak Toba",
    "bdr": "West Coast Bajau",
    "bew": "Betawi",
    "bol": "Bole",
    "btm": "Batak Mandailing",
    "dga": "Southern Dagaare",
    "dtp": "Central Dusun",
    "fat": "Fanti",
    "fon": "Fon",
    "gpe": "Ghanaian Pidgin English",
    "iba": "Iban",
    "igl": "Igala",
    "isv": "Interslavic",
    "kai": "Karekare",
    "kaj": "Jju",
    "kge": "Komering",
    "knc": "Central Kanuri",
    "kus": "Kusaal",
    "mag": "Magahi",
    "mos": "Mossi",
    "nr": "South Ndebele",
    "nup": "Nupe",
    "ppl": "Pipil",
    "rki": "Rakhine",
    "rsk": "Pannonian Rusyn",
    "syl": "Sylheti",
    "tdd": "Tai Nüa",
    "tig": "Tigre",
    "tly": "Talysh",
    "tok": "Toki Pona",
    "zgh": "Standard Moroccan Tamazight",
}

# Public wikis that are not a language edition: (dbname, server_name, project, name, closed).
# From SiteMatrix's "specials" section; private wikis are left out because the public
# EventStreams feed never carries them.
SPECIAL_WIKIS = (
    ("wikidatawiki", "www.wikidata.org", "wikidata", "Wikidata", False),
    ("testwikidatawiki", "test.wikidata.org", "wikidata", "Test Wikidata", False),
    ("commonswiki", "commons.wikimedia.org", "commons", "Wikimedia Commons", False),
    ("testcommonswiki", "test-commons.wikimedia.org", "commons", "Test Wikimedia Commons", False),
    ("metawiki", "meta.wikimedia.org", "meta", "Meta-Wiki", False),
    ("mediawikiwiki", "www.mediawiki.org", "mediawiki", "MediaWiki.org", False),
    ("specieswiki", "species.wikimedia.org", "species", "Wikispecies", False),
    ("wikifunctionswiki", "www.wikifunctions.org", "wikifunctions", "Wikifunctions", False),
    ("incubatorwiki", "incubator.wikimedia.org", "incubator", "Wikimedia Incubator", False),
    ("sourceswiki", "wikisource.org", "wikisource", "Multilingual Wikisource", False),
    ("betawikiversity", "beta.wikiversity.org", "wikiversity", "Beta Wikiversity", False),
    ("testwiki", "test.wikipedia.org", "wikipedia", "Test Wikipedia", False),
    ("test2wiki", "test2.wikipedia.org", "wikipedia", "Test2 Wikipedia", False),
    ("nostalgiawiki", "nostalgia.wikipedia.org", "wikipedia", "Nostalgia Wikipedia", True),
    ("tenwiki", "ten.wikipedia.org", "wikipedia", "Wikipedia 10", True),
    (
        "foundationwiki",
        "foundation.wikimedia.org",
        "foundation",
        "Wikimedia Foundation Governance Wiki",
        False,
    ),
    ("outreachwiki", "outreach.wikimedia.org", "outreach", "Outreach Wiki", False),
    ("labswiki", "wikitech.wikimedia.org", "wikitech", "Wikitech", False),
    ("loginwiki", "login.wikimedia.org", "login", "Wikimedia Login Wiki", False),
    ("apiportalwiki", "api.wikimedia.org", "api", "Wikimedia API Portal", False),
    ("votewiki", "vote.wikimedia.org", "vote", "Wikimedia Vote Wiki", False),
    ("strategywiki", "strategy.wikimedia.org", "strategy", "Wikimedia Strategic Planning", True),
    ("usabilitywiki", "usability.wikimedia.org", "usability", "Wikimedia Usability Initiative", True),
    ("wikimaniawiki", "wikimania.wikimedia.org", "wikimania", "Wikimania", False),
    *(
        (f"wikimania{year}wiki", f"wikimania{year}.wikimedia.org", "wikimania", f"Wikimania {year}", True)
        for year in range(2005, 2019)
    ),
)

# Codes that MediaWiki's LanguageConverter serves as script or regional variants of one wiki: the
# variant is a way of displaying the base wiki's pages, not a wiki of its own
# (https://www.mediawiki.org/wiki/Writing_systems/LanguageConverter). Both the MediaWiki codes and
# their BCP 47 spellings (zh-hans, sr-latn, ...) are listed, since people type either.
LANGUAGE_CONVERTER_VARIANTS = {
    "zh": (
        "zh-hans", "zh-hant", "zh-cn", "zh-tw", "zh-hk", "zh-sg", "zh-mo", "zh-my",
    ),
    "sr": ("sr-ec", "sr-el", "sr-cyrl", "sr-latn"),
    "sh": ("sh-latn", "sh-cyrl"),
    "kk": ("kk-cyrl", "kk-latn", "kk-arab", "kk-kz", "kk-tr", "kk-cn"),
    "ku": ("ku-latn", "ku-arab"),
    "crh": ("crh-latn", "crh-cyrl"),
    "gan": ("gan-hans", "gan-hant"),
    "wuu": ("wuu-hans", "wuu-hant"),
    "iu": ("ike-cans", "ike-latn"),
    "shi": ("shi-tfng", "shi-latn"),
    "tg": ("tg-cyrl", "tg-latn"),
    "uz": ("uz-cyrl", "uz-latn"),
    "ban": ("ban-bali",),
    "tly": ("tly-cyrl",),
}  # fmt: skip


# ISO 639-3 codes of languages whose wiki uses an older or broader Wikimedia code, beyond the aliases
# Pywikibot lists. yue.wiktionary exists, so "yue" means zh-yue only for Wikipedia: the resolver tries
# exact codes before aliases.
ISO_CODE_ALIASES = {"yue": "zh-yue", "bho": "bh", "cbk": "cbk-zam"}


def class_assignments(source: str, class_name: str) -> dict[str, Any]:
    """Literal values assigned in the body of `class_name` (e.g. `codes = {...}`)."""
    values: dict[str, Any] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and node.name == class_name):
            continue
        for statement in node.body:
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target = statement.targets[0]
                if isinstance(target, ast.Name):
                    try:
                        values[target.id] = ast.literal_eval(statement.value)
                    except ValueError:  # a computed value: not data
                        continue
    return values


def family_codes(pywikibot_dir: Path, family: str) -> tuple[set[str], set[str]]:
    """(all live codes, closed codes) of one multilingual family; deleted wikis are left out."""
    values = class_assignments((pywikibot_dir / "families" / f"{family}_family.py").read_text(), "Family")
    closed = set(values.get("closed_wikis", ()))
    return set(values.get("codes", ())) | closed, closed


def code_aliases(pywikibot_dir: Path) -> dict[str, str]:
    """Pywikibot's aliases for Wikimedia language codes, e.g. be-x-old → be-tarask, nb → no."""
    values = class_assignments((pywikibot_dir / "family.py").read_text(), "WikimediaFamily")
    return {alias.replace("_", "-"): code for alias, code in values.get("code_aliases", {}).items()}


def sitematrix_language_names(path: Path | None) -> dict[str, str]:
    """Language code → English name from a saved SiteMatrix API response."""
    if path is None:
        return {}
    matrix = json.loads(path.read_text())["sitematrix"]
    names = {}
    for key, entry in matrix.items():
        if key.isdigit() and entry.get("localname"):
            names[entry["code"]] = entry["localname"]
    # SiteMatrix lists the Taraškievica wiki under its old code.
    if "be-x-old" in names:
        names.setdefault("be-tarask", names["be-x-old"])
    return names


def capitalised(name: str) -> str:
    # A few CLDR names are lower-case ("võro"); they start a label here.
    return name[:1].upper() + name[1:]


def language_rows(pywikibot_dir: Path, names: dict[str, str]) -> Iterator[dict[str, str]]:
    for project, suffix, title in LANGUAGE_PROJECTS:
        codes, closed = family_codes(pywikibot_dir, project)
        for code in sorted(codes):
            if (code, project) in NOT_LANGUAGES:
                continue
            language = capitalised(names.get(code) or NEWER_LANGUAGE_NAMES.get(code) or code)
            dbname = DBNAME_EXCEPTIONS.get((code, project), code.replace("-", "_") + suffix)
            yield {
                "dbname": dbname,
                "server_name": f"{code}.{project}.org",
                "project": project,
                "code": code,
                "language": language,
                "name": f"{language} {title}",
                "closed": "1" if code in closed else "0",
            }


def chapter_rows(pywikibot_dir: Path) -> Iterator[dict[str, str]]:
    # Chapter, thematic organisation and user group wikis: <code>.wikimedia.org, database <code>wikimedia.
    values = class_assignments(
        (pywikibot_dir / "families" / "wikimediachapter_family.py").read_text(), "Family"
    )
    closed = set(values.get("closed_wikis", ()))
    for code in sorted(set(values.get("codes", ())) | closed):
        yield {
            "dbname": code.replace("-", "_") + "wikimedia",
            "server_name": f"{code}.wikimedia.org",
            "project": "wikimedia",
            "code": "",
            "language": "",
            "name": f"Wikimedia affiliate wiki ({code})",
            "closed": "1" if code in closed else "0",
        }


def special_rows() -> Iterator[dict[str, str]]:
    for dbname, server_name, project, name, closed in SPECIAL_WIKIS:
        yield {
            "dbname": dbname,
            "server_name": server_name,
            "project": project,
            "code": "",
            "language": "",
            "name": name,
            "closed": "1" if closed else "0",
        }


def alias_rows(pywikibot_dir: Path, known_codes: set[str]) -> Iterator[dict[str, str]]:
    seen = set()
    for code, variants in LANGUAGE_CONVERTER_VARIANTS.items():
        for variant in variants:
            seen.add(variant)
            yield {"alias": variant, "code": code, "kind": "variant"}
    for alias, code in sorted({**code_aliases(pywikibot_dir), **ISO_CODE_ALIASES}.items()):
        if alias not in seen and alias != code and code in known_codes:
            seen.add(alias)
            yield {"alias": alias, "code": code, "kind": "alias"}


def write_csv(path: Path, fieldnames: list[str], rows: Iterable[dict[str, str]]) -> int:
    rows = list(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pywikibot", type=Path, required=True, help="the unpacked `pywikibot` package dir")
    parser.add_argument("--sitematrix", type=Path, help="a saved action=sitematrix JSON response")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)

    names = sitematrix_language_names(args.sitematrix)
    wikis = [*language_rows(args.pywikibot, names), *special_rows(), *chapter_rows(args.pywikibot)]
    dbnames = [row["dbname"] for row in wikis]
    duplicates = {name for name in dbnames if dbnames.count(name) > 1}
    if duplicates:
        raise SystemExit(f"duplicate database names: {sorted(duplicates)}")
    fields = ["dbname", "server_name", "project", "code", "language", "name", "closed"]
    count = write_csv(args.out_dir / "wikis.csv", fields, wikis)
    known_codes = {row["code"] for row in wikis if row["code"]}
    aliases = write_csv(
        args.out_dir / "wiki_aliases.csv", ["alias", "code", "kind"], alias_rows(args.pywikibot, known_codes)
    )
    sys.stderr.write(f"wrote {count} wikis and {aliases} aliases to {args.out_dir}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
