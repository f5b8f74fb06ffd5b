"""One broker lexicon (nlp/data/brokers.json): the extractor, the collectors' search words, the Slack routes
and the docs all follow it, and this file fails when any of them disagrees.

Regression: the collectors once kept their own list and never searched for 丸三, 東洋, 内藤, LINE,
三菱UFJモルガン・スタンレー, DMM.com or 三菱UFJ eスマート証券 (spelled without its space).
"""

from __future__ import annotations

import json
import re

import pytest

from monitor.alerts.config import SlackConfig
from monitor.collectors.bluesky import KeywordFilter
from monitor.collectors.config import BlueskyConfig, XConfig
from monitor.errors import ConfigError
from nlp.corpus import CANONICAL_BROKERS
from nlp.entities import BROKER_LEXICON, BROKERS, brokers_of, extract
from tests.conftest import REPO, SHARED

LEXICON = json.loads(BROKER_LEXICON.read_text(encoding="utf-8"))
SPELLINGS = [
    (b["name"], word) for b in LEXICON["brokers"] for word in [b["name"], *b["aliases"], *b.get("weak", [])]
]


def test_extractor_and_corpus_use_the_lexicon_names():
    assert BROKERS == tuple(b["name"] for b in LEXICON["brokers"])
    assert CANONICAL_BROKERS == BROKERS


@pytest.mark.parametrize("terms", [XConfig().brokers, BlueskyConfig().keywords], ids=["x", "bluesky"])
@pytest.mark.parametrize(("broker", "spelling"), SPELLINGS)
def test_every_spelling_is_searched_for(terms, broker, spelling):
    assert KeywordFilter.of(terms).matches(spelling), f"{spelling} ({broker}) is never searched for"


@pytest.mark.parametrize("broker", ["丸三証券", "東洋証券", "内藤証券", "LINE証券", "三菱UFJモルガン・スタンレー証券",
                                    "DMM.com証券", "三菱UFJ eスマート証券"])
def test_once_missing_brokers_are_searched_and_extracted(broker):
    assert KeywordFilter.of(XConfig().brokers).matches(f"{broker}で不正ログイン")
    assert brokers_of(extract(f"{broker}の口座で不正ログインされた")) == [broker]


def test_slack_routes_take_only_canonical_names():
    assert SlackConfig(routes={name: "C1" for name in BROKERS}).channel_for("broker", BROKERS[0]) == "C1"
    with pytest.raises(ConfigError, match=r"'楽天' is not a broker name: did you mean '楽天証券'\?"):
        SlackConfig(routes={"楽天": "C1"})


def _listed_names(text: str, heading: str) -> list[str]:
    paragraphs = text.split(heading, 1)[1].split("\n\n")
    paragraph = next(p for p in paragraphs if p.lstrip().startswith("楽天証券"))
    paragraph = re.sub(r"\([^)]*\)", "", paragraph.split("Aliases")[0])
    return [n.strip(" .\n") for n in paragraph.replace("\n", " ").split(",") if n.strip(" .\n")]


@pytest.mark.parametrize(
    ("path", "heading"),
    [(SHARED / "DESIGN.md", "### Brokers: canonical official names"), (REPO / "docs" / "labeling-guide.md", "### 4.1")],
    ids=["DESIGN.md", "labeling-guide.md"],
)
def test_docs_list_the_lexicon_names(path, heading):
    if not path.exists():
        pytest.skip(f"{path} not found (the shared folder sits beside the repository)")
    assert _listed_names(path.read_text(encoding="utf-8"), heading) == list(BROKERS)
