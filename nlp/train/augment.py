"""Generated training posts: reported-speech frames and third-person retellings of train victim reports."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from nlp.corpus import Example

# reported speech: the commonest false alarm on real pages

# A victim's own words, quoted by a news story, a summary blog, a hearsay post or a repost, are not a
# victim report (docs/labeling-guide.md). Real pages do this all the time and the hand-written corpus does
# it rarely, so the train split is extended with such frames around its own victim reports. Only train
# posts are used, so dev and test stay untouched.
_FRAMES = (
    "{place}{age}の{who}は「{q}」と話す。",
    "取材に応じた{place}{age}{who}は「{q}」と振り返った。同様の被害は各地で相次いでいる。",
    "「{q}」\nこうした投稿がSNSで相次いでいる。{broker}は注意を呼びかけている。",
    "被害に遭った{who}({age})は取材にこう答えた。\n「{q}」",
    "RT @{handle}: {q}",
    "これ怖すぎる… QT {q}",
    "TLで見たけど「{q}」って人がいるらしい。みんな二段階認証しといて",
    "ある{age}の{who}は{broker}の口座で被害に遭い、「{q}」と証言している。",
    "【被害者の声】「{q}」\n他人事ではありません。今すぐできる対策をまとめました。",
    "ネットで見た体験談:「{q}」 自分の口座も確認したけど大丈夫だった",
)
_AGES = ("20代", "30代", "40代", "50代", "60代", "70代")
_WHO = ("男性", "女性", "会社員の男性", "パート勤務の女性", "自営業の男性", "投資家")
_PLACES = ("", "東京都内の", "大阪府の", "関東在住の", "愛知県の", "福岡市の")
_BROKERS = ("楽天証券", "SBI証券", "マネックス証券", "野村證券", "松井証券", "証券会社")


def reported_speech(examples: Sequence[Example], ratio: float, seed: int) -> list[Example]:
    """incident_discussion variants that quote (or repost) randomly chosen victim reports."""
    victims = [ex for ex in examples if ex.label == "victim_report"]
    rng = random.Random(seed)
    out: list[Example] = []
    for i in range(int(len(victims) * max(0.0, ratio))):
        ex = rng.choice(victims)
        quote = " ".join(ex.text.split())[:160].replace("「", "『").replace("」", "』")
        frame = rng.choice(_FRAMES)
        text = frame.format(
            q=quote, age=rng.choice(_AGES), who=rng.choice(_WHO), place=rng.choice(_PLACES),
            broker=rng.choice(_BROKERS), handle=f"user{rng.randrange(10_000)}",
        )  # fmt: skip
        out.append(Example(id=f"aug-{i}-{ex.id}", text=text, label="incident_discussion", style="news"))
    return out


# The same event told about someone else: a victim report whose first-person words are swapped for a
# third-person subject is a story about another person's case (incident_discussion), the commonest false
# alarm on real news and blog pages. Only posts with an explicit first-person word are rewritten: a post
# whose subject is dropped would come out unchanged under the opposite label.
_FIRST_PERSON = re.compile(r"私|わたし|僕|ぼく|ボク|俺|おれ|オレ|自分|ワイ|あたし")
_THIRD_SUBJECTS = (
    "男性",
    "女性",
    "この男性",
    "その女性",
    "Aさん",
    "相談者",
    "投稿者",
    "この投資家",
    "被害者",
)
_NEWS_LEADS = (
    "",
    "",
    "{age}の{who}によると、",
    "取材によると、",
    "記者が話を聞いた{who}の場合、",
    "ある{who}のケース。",
)


def third_person(examples: Sequence[Example], ratio: float, seed: int) -> list[Example]:
    """incident_discussion variants of first-person victim reports retold about a third person."""
    victims = [ex for ex in examples if ex.label == "victim_report" and _FIRST_PERSON.search(ex.text)]
    rng = random.Random(seed + 1)
    out: list[Example] = []
    for i in range(min(len(victims), int(len(victims) * max(0.0, ratio)))):
        ex = victims[i] if ratio >= 1 else rng.choice(victims)
        who = rng.choice(_THIRD_SUBJECTS)
        lead = rng.choice(_NEWS_LEADS).format(age=rng.choice(_AGES), who=rng.choice(_WHO))
        text = lead + _FIRST_PERSON.sub(who, ex.text)
        out.append(Example(id=f"tp-{i}-{ex.id}", text=text, label="incident_discussion", style="news"))
    return out
