"""Synthetic `recentchange` events whose mix and sizes follow the real captures in `tests/data/`.

What is learned from the complete, unfiltered capture (`2021-08-27_all-wikis_1950.jsonl`, consecutive
Kafka offsets, so its mix is the stream's mix): the joint distribution of wiki, type, bot flag and
namespace (each generated event is a mutated copy of one captured event drawn uniformly), the lengths of
titles, comments and user names (kept: mutations replace characters, they do not append), the JSON
shape of each type, and how far `meta.dt` goes backwards between consecutive events.

The capture saw 73 wikis in one minute; a day of the stream touches several hundred. The share of events
from wikis the capture did not see is estimated Good–Turing style (wikis seen once / events), and
spread Zipf-wise over open wikis of the shipped catalog (`teston/core/data/wikis.csv`), whose events are
copies of captured events of the same project moved to that wiki.

Events are rendered in the current payload shape (with `title_url` and `notify_url`, as in the 2025
sample), since that is what the live service sends today.

Speed: each template is serialised once and split around the fields that vary, so an event is a
`str.join` of prepared pieces, not a `json.dumps` of a built dict.
"""

from __future__ import annotations

import csv
import itertools
import json
import operator
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "tests" / "data"
SHARED_DATA_DIR = Path("/work/shared/data/recentchange")
COMPLETE_CAPTURE = "2021-08-27_all-wikis_1950.jsonl"
DEFAULT_WIKIS = 400
# Wikis too large or special to stand in for a small wiki of the long tail.
_NOT_TAIL_MODELS = {"commonswiki", "wikidatawiki", "mediawikiwiki", "specieswiki", "incubatorwiki"}
_TAIL_TEMPLATES_PER_WIKI = 6
_ZIPF_EXPONENT = 1.1
# Sentinels placed in a template before it is serialised, then split on.
_SLOTS = ("meta_id", "dt", "timestamp", "offset", "rcid", "rev_old", "rev_new", "title", "user")
_UUID_VARIANT = {hexit: "89ab"[int(hexit, 16) & 3] for hexit in "0123456789abcdef"}


def capture_path(name: str = COMPLETE_CAPTURE) -> Path:
    """A capture file: `tests/data/` first, the shared data folder otherwise."""
    local = DATA_DIR / name
    if local.exists():
        return local
    shared = SHARED_DATA_DIR / name
    if shared.exists():
        return shared
    raise FileNotFoundError(f"capture {name} is in neither {DATA_DIR} nor {SHARED_DATA_DIR}")


def read_capture(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True, slots=True)
class CatalogWiki:
    dbname: str
    server_name: str
    project: str


def open_catalog_wikis() -> list[CatalogWiki]:
    """Open wikis of the shipped catalog, in file order."""
    data = resources.files("teston.core").joinpath("data").joinpath("wikis.csv")
    with data.open("r", encoding="utf-8") as rows:
        return [
            CatalogWiki(row["dbname"], row["server_name"], row["project"])
            for row in csv.DictReader(rows)
            if row.get("closed", "0") in ("0", "", "false", "False")
        ]


@dataclass(frozen=True, slots=True)
class Template:
    """One captured event, serialised once, with the fields that vary left as format fields."""

    wiki: str
    type: str
    bot: bool
    pieces: tuple[str, ...]  # the serialised event cut at each varying field
    pick: Callable[[Sequence[str]], tuple[str, ...]]  # from values in `_SLOTS` order, those after each cut
    has_title: bool
    has_user: bool
    title: str
    title_escaped: str
    user: str
    title_plain: bool  # no character of the title needs escaping in JSON
    user_plain: bool
    rcid: int
    rev_new: int
    rev_delta: int


@dataclass
class CaptureProfile:
    """What the complete capture says about the stream, and the templates generation draws from."""

    templates: list[Template]
    cum_weights: list[float]
    lags: list[int]  # seconds meta.dt lies behind the running maximum, one per captured event
    unseen_share: float
    wikis: int
    source_events: int
    summary: dict[str, Any] = field(default_factory=dict)


def _to_current_shape(event: dict[str, Any]) -> dict[str, Any]:
    """Add `title_url` and `notify_url` where the 2025 payload has them, keeping its key order."""
    if "title_url" in event:
        return event
    base = f"{event.get('server_url', '')}{event.get('server_script_path', '/w')}/index.php"
    rcid = event.get("id")
    revision = event.get("revision") or {}
    notify: str | None = None
    if event["type"] == "edit":
        notify = f"{base}?diff={revision.get('new')}&oldid={revision.get('old')}&rcid={rcid}"
    elif event["type"] == "new":
        notify = f"{base}?oldid={revision.get('new')}&rcid={rcid}"
    elif event["type"] == "categorize":
        notify = f"{base}?diff={rcid}&oldid=0&rcid={rcid}"
    shaped: dict[str, Any] = {}
    for key, value in event.items():
        shaped[key] = value
        if key == "title":
            shaped["title_url"] = event.get("meta", {}).get("uri", "")
        elif key == "bot" and notify is not None:
            shaped["notify_url"] = notify
    return shaped


def _retarget(event: dict[str, Any], wiki: CatalogWiki) -> dict[str, Any]:
    """The event as if it had happened on `wiki`."""
    old_server = event["server_name"]
    text = json.dumps(event, ensure_ascii=False).replace(old_server, wiki.server_name)
    moved: dict[str, Any] = json.loads(text)
    moved["wiki"] = wiki.dbname
    return moved


def _template(event: dict[str, Any]) -> Template:
    event = _to_current_shape(event)
    marked = json.loads(json.dumps(event))
    marked["meta"]["id"] = "@@meta_id@@"
    marked["meta"]["dt"] = "@@dt@@"
    marked["meta"]["offset"] = "@@offset@@"
    marked["timestamp"] = "@@timestamp@@"
    if isinstance(event.get("id"), int):
        marked["id"] = "@@rcid@@"
    revision: dict[str, Any] = event["revision"] if isinstance(event.get("revision"), dict) else {}
    has_revision = isinstance(revision.get("new"), int)
    if has_revision:
        marked["revision"]["new"] = "@@rev_new@@"
        if isinstance(revision.get("old"), int):
            marked["revision"]["old"] = "@@rev_old@@"
    title = event.get("title")
    if isinstance(title, str) and title:
        marked["title"] = "@@title@@"
    user = event.get("user")
    if isinstance(user, str) and user and not event.get("bot"):
        marked["user"] = "@@user@@"
    text = json.dumps(marked, ensure_ascii=False, separators=(",", ":"))
    # Numbers were marked as strings: drop the quotes around their sentinels.
    for numeric in ("offset", "timestamp", "rcid", "rev_new", "rev_old"):
        text = text.replace(f'"@@{numeric}@@"', f"@@{numeric}@@")
    pieces = re.split(r"@@(\w+)@@", text)
    slots = pieces[1::2]
    if any(name not in _SLOTS for name in slots):
        raise ValueError(f"unexpected sentinel among {slots}")
    # The values tuple ends with an empty string that follows the last piece; every template has at
    # least `meta_id`, so itemgetter always gets two or more indices and returns a tuple.
    pick = operator.itemgetter(*(_SLOTS.index(name) for name in slots), len(_SLOTS))
    rev_new = int(revision["new"]) if has_revision else 0
    rev_old = revision.get("old")
    return Template(
        wiki=event["wiki"],
        type=str(event["type"]),
        bot=bool(event.get("bot")),
        pieces=tuple(pieces[0::2]),
        pick=pick,
        has_title=isinstance(title, str) and bool(title),
        has_user=isinstance(user, str) and bool(user) and not event.get("bot"),
        title=title if isinstance(title, str) else "",
        title_escaped=json.dumps(title, ensure_ascii=False)[1:-1] if isinstance(title, str) else "",
        user=user if isinstance(user, str) else "",
        title_plain=isinstance(title, str) and json.dumps(title, ensure_ascii=False)[1:-1] == title,
        user_plain=isinstance(user, str) and json.dumps(user, ensure_ascii=False)[1:-1] == user,
        rcid=int(event["id"]) if isinstance(event.get("id"), int) else 0,
        rev_new=rev_new,
        rev_delta=max(1, rev_new - int(rev_old)) if isinstance(rev_old, int) else 1,
    )


def _backward_lags(events: Sequence[dict[str, Any]]) -> list[int]:
    """For each event, how many seconds its `meta.dt` lies behind the latest seen before it."""
    lags = []
    latest = None
    for event in events:
        moment = datetime.fromisoformat(event["meta"]["dt"].replace("Z", "+00:00"))
        latest = moment if latest is None or moment > latest else latest
        lags.append(int((latest - moment).total_seconds()))
    return lags


def learn_profile(
    capture: Path | None = None, *, wikis: int = DEFAULT_WIKIS, seed: int = 0
) -> CaptureProfile:
    """Learn the stream's mix from the complete capture and extend it to `wikis` wikis."""
    events = read_capture(capture or capture_path())
    counts = Counter(event["wiki"] for event in events)
    seen_once = sum(1 for n in counts.values() if n == 1)
    unseen_share = seen_once / len(events)

    templates = [_template(event) for event in events]
    weights = [(1.0 - unseen_share) / len(events)] * len(events)

    rng = random.Random(seed)
    by_project: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["wiki"] in _NOT_TAIL_MODELS:
            continue
        project = event["server_name"].split(".")[-2] if "." in event["server_name"] else ""
        by_project.setdefault(project, []).append(event)
    tail = [wiki for wiki in open_catalog_wikis() if wiki.dbname not in counts and wiki.project in by_project]
    # Wikipedias first, then the rest: the busier editions come first in a Zipf ranking.
    rng.shuffle(tail)
    tail.sort(key=lambda wiki: wiki.project != "wikipedia")
    tail = tail[: max(0, wikis - len(counts))]
    if tail:
        ranks = [1.0 / (rank**_ZIPF_EXPONENT) for rank in range(1, len(tail) + 1)]
        scale = unseen_share / sum(ranks)
        for wiki, rank_weight in zip(tail, ranks, strict=True):
            pool = by_project[wiki.project]
            models = rng.sample(pool, min(_TAIL_TEMPLATES_PER_WIKI, len(pool)))
            for model in models:
                templates.append(_template(_retarget(model, wiki)))
                weights.append(rank_weight * scale / len(models))
    else:
        weights = [w / (1.0 - unseen_share) for w in weights]

    profile = CaptureProfile(
        templates=templates,
        cum_weights=list(itertools.accumulate(weights)),
        lags=_backward_lags(events),
        unseen_share=unseen_share,
        wikis=len(counts) + len(tail),
        source_events=len(events),
    )
    profile.summary = describe(json.dumps(event, ensure_ascii=False) for event in events)
    return profile


def describe(lines: Iterable[str]) -> dict[str, Any]:
    """The figures a generated stream must match: type mix, bot share, namespace mix, sizes."""
    types: Counter[str] = Counter()
    namespaces: Counter[Any] = Counter()
    wikis: Counter[str] = Counter()
    bots = 0
    total = 0
    size = title = comment = user = 0
    for line in lines:
        event = json.loads(line)
        total += 1
        size += len(line.encode())
        types[str(event["type"])] += 1
        namespaces[event.get("namespace")] += 1
        wikis[event["wiki"]] += 1
        bots += bool(event.get("bot"))
        title += len(event.get("title") or "")
        comment += len(event.get("comment") or "")
        user += len(event.get("user") or "")
    if not total:
        return {"events": 0}
    return {
        "events": total,
        "wikis": len(wikis),
        "top_wikis": {wiki: round(n / total, 3) for wiki, n in wikis.most_common(4)},
        "types": {kind: round(n / total, 3) for kind, n in types.most_common()},
        "bot_share": round(bots / total, 3),
        "main_namespace_share": round(namespaces.get(0, 0) / total, 3),
        "mean_json_bytes": round(size / total, 1),
        "mean_title_chars": round(title / total, 1),
        "mean_comment_chars": round(comment / total, 1),
        "mean_user_chars": round(user / total, 1),
    }


def _zipf_sampler(rng: random.Random, distinct: int) -> Iterator[int]:
    """Ranks 0..distinct-1 with P(rank) ∝ 1/(rank+1): a few pages and editors take most changes."""
    # Inverse transform of the continuous 1/x density on [1, distinct+1): exp(U·ln(distinct+1)) - 1.
    import math

    log_n = math.log(distinct + 1)
    exp = math.exp
    draw = rng.random
    while True:
        yield int(exp(draw() * log_n)) - 1


def _replace_tail(text: str, plain: bool, suffix: str) -> str:
    """`text` with its last characters replaced by `suffix` (same length when it is long enough)."""
    text = text[: -len(suffix)] + suffix if len(text) > len(suffix) + 2 else text + suffix
    if plain:
        return text
    return json.dumps(text, ensure_ascii=False)[1:-1]


class EventFactory:
    """Deterministic generator of JSON event lines drawn from a `CaptureProfile`."""

    def __init__(self, profile: CaptureProfile, seed: int = 0) -> None:
        self.profile = profile
        self.seed = seed

    def events(self, count: int, start: datetime, end: datetime) -> Iterator[str]:
        """`count` events, one JSON text each, with `meta.dt` spread over [start, end) in stream order.

        Like the live stream, `meta.dt` goes backwards now and then (by the captured lags), but never
        before `start`.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        rng = random.Random(self.seed)
        profile = self.profile
        chosen = rng.choices(profile.templates, cum_weights=profile.cum_weights, k=count)
        lags = rng.choices(profile.lags, k=count)
        # Enough distinct pages and editors that a day's roll-up groups a realistic number of them.
        pages = _zipf_sampler(rng, max(1000, count // 3))
        editors = _zipf_sampler(rng, max(200, count // 20))
        t0 = start.timestamp()
        floor = int(t0)
        step = (end.timestamp() - t0) / max(count, 1)
        dt_text: dict[int, str] = {}
        getrandbits = rng.getrandbits
        join = "".join
        chain = itertools.chain.from_iterable
        for i, template in enumerate(chosen):
            second = max(floor, int(t0 + step * (i + 0.5)) - lags[i])
            dt = dt_text.get(second)
            if dt is None:
                dt = dt_text[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            hexits = f"{getrandbits(128):032x}"
            # A version-4 UUID: version nibble 4, variant bits 10.
            meta_id = (
                f"{hexits[:8]}-{hexits[8:12]}-4{hexits[13:16]}-"
                f"{_UUID_VARIANT[hexits[16]]}{hexits[17:20]}-{hexits[20:32]}"
            )
            title = user = ""
            if template.has_title:
                page = next(pages)
                title = (
                    _replace_tail(template.title, template.title_plain, f" {page}")
                    if page
                    else template.title_escaped
                )
            if template.has_user:
                user = _replace_tail(template.user, template.user_plain, str(next(editors)))
            rev_new = template.rev_new + i
            values = (
                meta_id,
                dt,
                str(second),
                str(100_000_000 + i),
                str(template.rcid + i),
                str(rev_new - template.rev_delta),
                str(rev_new),
                title,
                user,
                "",
            )
            yield join(chain(zip(template.pieces, template.pick(values), strict=True)))

    def each_template(self, moment: datetime) -> Iterator[tuple[Template, float, str]]:
        """Every template once, unmutated but for `meta.id` and the time: (template, weight, JSON text)."""
        second = int(moment.timestamp())
        dt = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rng = random.Random(self.seed)
        previous = 0.0
        for template, cumulative in zip(self.profile.templates, self.profile.cum_weights, strict=True):
            meta_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            values = (
                meta_id,
                dt,
                str(second),
                "0",
                str(template.rcid),
                str(template.rev_new - template.rev_delta),
                str(template.rev_new),
                template.title_escaped,
                template.user if template.user_plain else json.dumps(template.user, ensure_ascii=False)[1:-1],
                "",
            )
            text = "".join(
                itertools.chain.from_iterable(zip(template.pieces, template.pick(values), strict=True))
            )
            yield template, cumulative - previous, text
            previous = cumulative


def sse_frames(lines: Iterable[str]) -> Iterator[bytes]:
    """Each event framed as the live stream frames it (`event: message`, a JSON `id:`, `data:`)."""
    for offset, line in enumerate(lines):
        event_id = f'[{{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":{offset}}}]'
        yield f"event: message\nid: {event_id}\ndata: {line}\n\n".encode()
