"""CheckList-style invariance: links, @mentions, reposts, emoji and hashtags must not decide a label.

Each edit is applied to every post of the corpus test split and run through the product's Analyzer; at most
2% of labels may change (issue 9: a t.co link or a leading @mention flipped one label in five, both almost
half). Brokers must survive the edits too: 「@SBI_SEC 勝手に…」 lost its broker.
"""

from __future__ import annotations

import json

import pytest

from nlp import Analyzer
from nlp.checklist import INVARIANCE_EDITS
from nlp.corpus import load_corpus
from nlp.entities import brokers_of, extract
from nlp.views import classifier_input, classifier_text, has_japanese, repost_handle
from tests.conftest import shared_path

MAX_FLIP_RATE = 0.02

EDITS = INVARIANCE_EDITS


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.load()


@pytest.fixture(scope="module")
def test_split():
    return load_corpus("test")


@pytest.fixture(scope="module")
def baseline(analyzer, test_split):
    return analyzer.analyze_batch([ex.text for ex in test_split])


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_that_means_nothing_flips_at_most_two_percent_of_test_labels(analyzer, test_split, baseline, edit):
    edited = analyzer.analyze_batch([EDITS[edit](ex.text) for ex in test_split])
    flips = [ex.id for ex, a, b in zip(test_split, baseline, edited, strict=True) if a.label != b.label]
    assert len(flips) / len(test_split) <= MAX_FLIP_RATE, f"{edit}: {len(flips)} flips, e.g. {flips[:5]}"
    lost = [ex.id for ex, a, b in zip(test_split, baseline, edited, strict=True) if set(a.brokers) - set(b.brokers)]
    assert not lost, f"{edit} hid the broker of {lost[:5]}"


def test_the_issue_example_keeps_its_label_and_broker_with_a_link_and_a_mention(analyzer):
    text = "ＳＢＩ証券で勝手にＮＩＳＡの投信が全部解約されてた😱"
    plain = analyzer.analyze(text)
    wrapped = analyzer.analyze(f"@kabu_taro88 {text} https://t.co/Xk3bQ9zLmA")
    assert plain.label == wrapped.label == "victim_report"
    assert plain.brokers == wrapped.brokers == ["SBI証券"]


def test_a_brokers_official_handle_names_the_broker(analyzer):
    a = analyzer.analyze("@RakutenSec 勝手に持ち株を全部売られてます。電話がつながりません")
    assert a.brokers == ["楽天証券"]
    mention = next(m for m in a.mentions if m.kind == "broker")
    assert mention.surface == "@RakutenSec" and mention.start == 0
    assert analyzer.analyze("@rakutensec_fan 今日の相場すごい").brokers == []


def test_classifier_view_drops_links_handles_and_repost_prefixes_and_quotes_the_quoted_post():
    assert classifier_input("RT @abc: 楽天証券で売られた https://t.co/x") == "楽天証券で売られた"
    assert classifier_input("@abc @def 口座が乗っ取られた🥲") == "口座が乗っ取られた"
    assert classifier_text("怖い qt @user: 口座を乗っ取られた") == "怖い 「口座を乗っ取られた」"
    assert repost_handle("RT @abc_1: text") == "abc_1" and repost_handle("text RT @abc_1: x") is None


def test_a_repost_carries_its_originals_label(analyzer):
    original = "楽天証券で寝てる間に持ち株を全部売られて、知らない香港株を買われてた。電話もつながらない"
    assert analyzer.analyze(f"RT @someone_1: {original}").label == analyzer.analyze(original).label


# --------------------------------------------------------------------------------------------------
# languages


def _real_tweets() -> list[tuple[str, str]]:
    out = []
    for name in ("kpop.jsonl", "brexit.jsonl"):
        path = shared_path("real", "x", "twarc2_jsonl", name)
        for line in path.read_text(encoding="utf-8").splitlines():
            out += [(t.get("lang", ""), t["text"]) for t in json.loads(line).get("data", [])]
    return out


def test_real_english_korean_and_spanish_tweets_naming_no_broker_are_irrelevant(analyzer):
    tweets = _real_tweets()
    assert len(tweets) == 200 and sum(lang in ("ko", "es") for lang, _ in tweets) >= 20
    results = analyzer.analyze_batch([text for _, text in tweets])
    wrong = [(lang, text[:60], a.label) for (lang, text), a in zip(tweets, results, strict=True)
             if a.label != "irrelevant"]  # fmt: skip
    assert not wrong, wrong[:5]


@pytest.mark.parametrize(
    ("text", "broker", "label"),
    [
        ("My SBI Securities account was hacked and someone sold everything I owned", "SBI証券", "victim_report"),
        ("Rakuten Securities is warning customers about phishing emails that copy its login page", "楽天証券",
         "incident_discussion"),
        ("Is Monex or Rakuten Securities cheaper for buying US ETFs?", "マネックス証券", "irrelevant"),
    ],
)  # fmt: skip
def test_english_posts_about_japanese_brokers_are_classified(analyzer, text, broker, label):
    a = analyzer.analyze(text)
    assert broker in a.brokers and a.label == label


def test_english_aliases_do_not_take_the_bank_or_the_shop():
    assert brokers_of(extract("I pay with my Rakuten Card and keep cash at Rakuten Bank")) == []
    assert brokers_of(extract("SMBC Nikko and au Kabucom froze accounts after unauthorized trades")) == [
        "SMBC日興証券", "三菱UFJ eスマート証券",
    ]  # fmt: skip
    assert has_japanese("楽天") and not has_japanese("Brexit means Brexit")


def test_a_japanese_hashtag_does_not_bring_an_english_post_into_scope(analyzer):
    # Regression: the scope rule read the raw text, so "… #つぶやき" made an English post without a broker
    # "Japanese" and asked the model, which flipped three test posts in the hashtag invariance check.
    text = "The regulator said unauthorized trades at online brokers had passed 500 billion yen."
    plain, tagged = analyzer.analyze(text), analyzer.analyze(f"{text} #つぶやき")
    assert plain.label == tagged.label == "irrelevant" and tagged.score == 1.0
