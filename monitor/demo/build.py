"""Builds the bundled demo stream: one week of Japanese posts in the Post-record format.

Run ``python -m monitor.demo.build`` to regenerate ``stream.jsonl`` (seeded, so the file is reproducible).
The week (JST, 2025-03-14 to 2025-03-21) holds what the monitor meets in real life:

- everyday chatter about markets, apps and shopping, with the diurnal rhythm of Japanese timelines;
- a trickle of incident discussion (warnings, advice) and a rare isolated victim report;
- decoys that must NOT page: a news day about one broker with no victims (day 3), a login outage
  storm at another broker (day 4), one victim report retweeted by a hundred accounts (day 5);
- the incident: from 14:30 on 19 March, victims at one broker report holdings sold and unknown Hong Kong
  small caps bought, many naming the same ticker.

Texts are written for this project; people and accounts are invented.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

JST = timezone(timedelta(hours=9))
START = datetime(2025, 3, 14, 0, 0, tzinfo=JST)
DAYS = 7
OUT = Path(__file__).with_name("stream.jsonl")

SURGE_BROKER = "楽天証券"
SURGE_START = datetime(2025, 3, 19, 14, 30, tzinfo=JST)

CHATTER = [
    "今日の日経平均、後場で急に伸びたな。半導体が強い",
    "NISAの積立、今月分の約定を確認した。淡々と続けるだけ",
    "楽天市場のお買い物マラソン、ポイント何倍になるんだっけ",
    "楽天モバイルの電波、地下だとまだ弱い気がする",
    "トヨタの決算まであと少し。持ち株どうするか迷う",
    "高配当株だけで年100万円の配当を目指してる。道のりは長い",
    "新しいスマホに機種変したらアプリのログインが全部やり直しで面倒",
    "米国株、夜中に見るのやめたら睡眠の質が上がった",
    "テンセント少しだけ買ってみた。中国株は値動きが荒いから100株だけ",
    "香港市場の指数、今日は反発してる",
    "パスワード忘れてメールで再設定した。自分のミス",
    "Amazonを名乗る怪しいSMSが来た。無視無視",
    "宅配業者の不在通知SMS、最近多すぎない？",
    "インスタ乗っ取られた友達から変なDMが来た",
    "ゲームのアカウントが乗っ取られてレアキャラ全部消えた…最悪",
    "学校のテストで不正があったらしくて再試験になった",
    "今日のランチは800円の定食。物価高がしんどい",
    "証券会社のアプリ、UI変わって使いにくくなった",
    "SBI証券で米国ETFを積立設定した",
    "マネックス証券の銘柄スカウター便利だよね",
    "松井証券の一日信用、手数料かからないのありがたい",
    "株主優待のクオカード届いた",
    "為替が150円台で落ち着かない",
    "iDeCoの運用先を全世界株式に変えた",
    "決算跨ぎはしない派です",
    "含み損がやっと消えた。長かった",
    "配当金の入金通知きた。小さな幸せ",
    "楽天カードの明細、ポイント払いにした分も反映されてた",
    "アリババの株価、ここ数日で少し戻したね",
    "週末は積読を消化する予定",
]

DISCUSSION = [
    "証券会社を装ったフィッシングメールが増えているそうです。ログインはブックマークから。",
    "証券口座の乗っ取り被害のニュース見た。二段階認証を今すぐ設定しよう",
    "金融庁が証券口座への不正アクセスについて注意喚起を出してる",
    "フィッシングメール来たけどリンクは踏んでない。みんなも気をつけて",
    "不正ログインで勝手に株を売買される被害が出てるらしい。怖すぎる",
    "自分は被害なかったけど、念のためパスワードを全部変えた",
    "証券会社の補償方針、もう少しはっきり出してほしい",
    "乗っ取られた人の話をTLで見た。ワンタイムパスワード必須にしてほしい",
    "中国の小型株を勝手に買わされる手口、株価操作目的なのかな",
    "口座のログイン履歴、定期的に確認したほうがいいよ",
]

NEWS_DAY = [
    "【速報】SBI証券を名乗るフィッシングサイトが確認されたとして、同社が注意を呼びかけ",
    "SBI証券、不審なメールのリンクからログインしないよう顧客に呼びかけ",
    "SBI証券の偽サイト、本物そっくりで見分けがつかないとの報道",
    "ニュース見た。SBI証券を装ったメールが大量に出回ってるらしい。私のところにも来たけど開いてない",
    "SBI証券の注意喚起、ちゃんと読んだ。ログインは公式アプリからにしよう",
    "SBI証券のフィッシング対策、多要素認証が来月から必須になるそう",
    "SBI証券の件、被害者が出ているかどうかはまだわからないみたい",
    "SBI証券を騙るSMSにご注意を。URLは絶対に踏まないで",
]

OUTAGE = [
    "SBI証券ログインできないんだけど",
    "SBI証券のアプリ落ちてる？",
    "SBI証券また障害？寄り付きで注文出せない",
    "SBI証券つながらない。メンテじゃないよね",
    "SBI証券、エラー画面しか出ない",
    "SBI証券ログイン画面で止まる。自分だけ？",
    "SBI証券の障害いつ直るの",
    "SBI証券サーバー落ちてて草",
]

VICTIM_TRICKLE = [
    ("マネックス証券", "マネックス証券の口座に知らないログイン履歴がある。パスワード変えて電話した"),
    ("松井証券", "松井証券、身に覚えのない約定が1件あって震えてる。サポートに連絡済み"),
    ("SBI証券", "SBI証券の登録メールアドレスが勝手に変更されてた。乗っ取られたかも"),
]

RETWEETED = "楽天証券で保有してた投資信託が全部売られてて、知らない株を買われてた。誰か同じ人いる？"

SURGE = [
    "{b}の口座にログインしたら、持ってた株が全部売られて知らない香港株(02269)を買われてた。意味がわからない",
    "{b}で勝手に中国株を買われた。注文した覚えは一切ない。取引履歴に見知らぬ約定がずらっと並んでる",
    "うちの母の{b}口座が乗っ取られたっぽい。保有株が売却されて香港の小型株02269になってた",
    "{b}、身に覚えのない約定通知が深夜に何件も届いてた。確認したら香港株を買い付けされてる",
    "やられた。{b}のパスワードと登録電話番号が勝手に変えられてて、NISAの投信が売られてる",
    "{b}で不正ログインされた。預り金で香港株 02269 を大量に買われて、含み損だけ残された",
    "今朝{b}見たら資産の半分が知らない中国株に化けてた。警察にも相談する",
    "{b}の口座から銀行に出金しようとしたら出金先口座が他人のに変更されてた。ゾッとした",
    "{b}に電話つながらない。自分の口座で勝手に売買されてるのに誰も対応してくれない",
    "私の{b}口座も不正アクセスされてました。ログイン履歴に海外IP、保有株は売却済み",
    "{b}で二段階認証してなかった自分が悪いのかもしれないけど、知らない株を買われてて泣きそう",
    "夫の{b}口座、勝手に信用取引が始められてて香港株(02269)を買われてた",
    "{b}のアプリ開いたら見たことない銘柄ばかり。全部売られて中国株になってる。乗っ取り被害だと思う",
    "{b}から約定のお知らせメール。何も注文してないのに香港株 02269 の買付が成立してる",
    "{b}口座が乗っ取られました。メールアドレスも変更されていて、ログインすらできない",
    "{b}で保有してた米国株ETFが勝手に売却されて、知らない銘柄を買われた。サポートに連絡中",
    "友人の{b}口座も同じ被害。勝手に株を売られて、香港の小型株を買われてたって",
    "{b}の取引履歴を見たら、自分が寝てる間に売りと買いが何十件も。完全に不正アクセスされてる",
    "{b}、ログインしたら知らない中国株が増えてる。こっちは何もしてないのに",
    "{b}でやられた人まだいる？うちも02269を勝手に買われてた",
    "{b}に不正ログインされて、保有株を売った代金で中国株を買われていました。{b}には連絡済みです",
    "父の{b}口座から知らない銀行口座に出金されてた。証券会社に問い合わせ中",
    "{b}の口座で身に覚えのない取引。香港株を買われてた。とりあえず取引停止をお願いした",
    "嘘だろ…{b}の口座、勝手に全部売却されて知らない銘柄に入れ替わってる",
    "{b}で不正取引の被害に遭いました。NISA枠で見知らぬ中国株が買われています",
    "{b}のログインパスワードが変わってて入れない。再設定したら保有株が売られてた",
    "{b}、私も被害者です。02269を勝手に買われて今マイナス40万円",
    "{b}で勝手に香港株を買われてた件、コールセンターに3時間かけてやっとつながった",
]

SURGE_REACTIONS = [
    "{b}の乗っ取り、TLに被害報告がどんどん流れてくる。怖い",
    "{b}使ってるけど今のところ大丈夫そう。みんなログイン履歴確認して",
    "{b}で被害続出してるっぽい。パスワード変えてきた",
]


_SEEN: set[int] = set()


def _post(rng: random.Random, t: datetime, author: str, text: str, *, repost_of: str | None = None) -> dict:
    n = 1900000000000000000 + int(t.timestamp()) * 1000 + rng.randrange(1000)
    while n in _SEEN:  # ids must be unique: (source, id) identifies a post
        n += 1
    _SEEN.add(n)
    pid = str(n)
    handle = f"user{author}"
    return {
        "source": "x",
        "id": pid,
        "created_at": t.isoformat(),
        "author_id": author,
        "author_handle": handle,
        "text": text,
        "lang": "ja",
        "url": f"https://x.com/{handle}/status/{pid}",
        "repost_of": repost_of,
        "reply_to": None,
        "quote_of": None,
        "metrics": {"like_count": rng.randrange(0, 20)},
    }


def _decorate(rng: random.Random, text: str) -> str:
    tail = rng.choice(["", "", "", "…", "😱", "😭", "ｗ", "。", "！", " #投資", " #株"])
    return text + tail


def _diurnal(hour: int) -> float:
    """Relative posting activity by JST hour: quiet at night, peaks at lunch and in the evening."""
    return [0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 0.9, 0.9,
            1.3, 1.0, 0.9, 1.0, 0.9, 0.9, 1.1, 1.3, 1.4, 1.3, 1.0, 0.6][hour]


def build(seed: int = 20250319) -> list[dict]:
    rng = random.Random(seed)
    _SEEN.clear()
    posts: list[dict] = []
    author_pool = [str(10_000 + i) for i in range(3_000)]

    # Background: chatter and a trickle of discussion, hour by hour.
    for hour in range(DAYS * 24):
        base = START + timedelta(hours=hour)
        weight = _diurnal(base.hour)
        for _ in range(rng.randint(int(6 * weight), int(10 * weight) + 1)):
            t = base + timedelta(seconds=rng.randrange(3600))
            posts.append(_post(rng, t, rng.choice(author_pool), _decorate(rng, rng.choice(CHATTER))))
        if rng.random() < 0.5 * weight:
            t = base + timedelta(seconds=rng.randrange(3600))
            posts.append(_post(rng, t, rng.choice(author_pool), _decorate(rng, rng.choice(DISCUSSION))))

    # A rare isolated victim report on days 1 and 2: real, but not a surge.
    for day, (_broker, text) in zip((1, 2, 2), VICTIM_TRICKLE, strict=True):
        t = START + timedelta(days=day, hours=rng.randint(9, 21), minutes=rng.randrange(60))
        posts.append(_post(rng, t, rng.choice(author_pool), text))

    # Decoy 1, day 3: a news day about one broker, many posts, no victims.
    news_start = START + timedelta(days=3, hours=10)
    for _ in range(70):
        t = news_start + timedelta(minutes=rng.randrange(8 * 60))
        posts.append(_post(rng, t, rng.choice(author_pool), _decorate(rng, rng.choice(NEWS_DAY))))

    # Decoy 2, day 4: a login outage at the same broker: a storm of complaints in one hour.
    outage_start = START + timedelta(days=4, hours=9)
    for _ in range(90):
        t = outage_start + timedelta(minutes=rng.randrange(70))
        posts.append(_post(rng, t, rng.choice(author_pool), _decorate(rng, rng.choice(OUTAGE))))

    # Decoy 3, day 5: one victim's report, retweeted by a hundred accounts within two hours.
    original_t = START + timedelta(days=5, hours=20)
    original = _post(rng, original_t, "77777", RETWEETED)
    posts.append(original)
    for _ in range(110):
        t = original_t + timedelta(minutes=2 + rng.randrange(120))
        posts.append(_post(rng, t, rng.choice(author_pool), f"RT @user77777: {RETWEETED}", repost_of=original["id"]))

    # The incident, day 6: distinct victims at one broker, many naming the same Hong Kong small cap.
    victims = [str(50_000 + i) for i in range(40)]
    for i, author in enumerate(victims[:30]):
        t = SURGE_START + timedelta(minutes=int(i * 6 + rng.randrange(6)))
        text = SURGE[i % len(SURGE)].format(b=SURGE_BROKER)
        posts.append(_post(rng, t, author, _decorate(rng, text)))
    for i in range(25):
        t = SURGE_START + timedelta(minutes=20 + rng.randrange(200))
        text = SURGE_REACTIONS[i % len(SURGE_REACTIONS)].format(b=SURGE_BROKER)
        posts.append(_post(rng, t, rng.choice(author_pool), _decorate(rng, text)))

    posts.sort(key=lambda p: p["created_at"])
    return posts


def main() -> None:
    posts = build()
    with OUT.open("w", encoding="utf-8") as fh:
        for p in posts:
            fh.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(f"wrote {len(posts)} posts to {OUT}")


if __name__ == "__main__":
    main()
