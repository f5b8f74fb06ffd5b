"""Broker and ticker mentions in a post, with spans in the ORIGINAL text.

Everything runs on :func:`nlp.normalize.normalize` output (NFKC, lower-cased Latin, URLs and @mentions
replaced) and is mapped back with ``Normalized.span_to_original``. Matching uses a few precompiled regexes
(one trie-shaped alternation for all broker aliases, one for all company names), so a post costs a handful of
regex scans whatever the size of the lexicons.

Brokers: the canonical names of DESIGN.md, from the reviewed lexicon ``nlp/data/brokers.json``. Full names
(also with 株式会社 around them) and unambiguous aliases (マネックス, カブコム, ネオトレ) always count; ambiguous ones
(楽天, SBI, 野村, 大和, 松井, みずほ, 東海東京) only with a securities word nearby or a cue of that broker (SBIを装った
メール, 東海東京のセミナー), and spans such as 楽天市場, 住信SBIネット銀行, 野村さん, 大和市 never count. Near a word of
the alias's other business (みずほのATM, 楽天のポイント, 楽天で買い物) only a word that securities talk alone uses
(株, 証券, 約定, NISA, 投資 ...) makes it the broker.

Tickers by code follow DESIGN.md: ``7203.T``, ``130A.T``, ``0700.HK``, ``600519.SS``, ``000001.SZ``, ``TSLA``.
A number is a ticker only with evidence: a code cue (銘柄, コード, brackets, ``.T``/``.HK``), a market cue (香港,
中国株), a company name next to it, or a listed code in the securities master with a stock word nearby. Years,
prices, amounts, times, dates, PINs, phone numbers, percentages and share counts (100株) are rejected first.
Tickers by name resolve the bundled master's names (トヨタ, テンセント) when a stock or trade word is nearby. A name
that is also a broker (松井証券, 楽天) is the broker: it becomes a ticker only with words about its own shares
right after it (松井証券株, 楽天の株価) or its code next to it, and then it is not the broker. An age in brackets after
a person (男性(45), 祖母(88)) is never a code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from nlp.errors import ModelLoadError
from nlp.normalize import MAX_CHARS, Normalized, normalize
from nlp.securities import SecuritiesMaster, Security, normalize_code

__all__ = ["BROKERS", "BROKER_LEXICON", "Mention", "broker_search_terms", "brokers_of", "extract", "extract_traced",
           "tickers_of"]

BROKER_LEXICON = Path(__file__).resolve().parent / "data" / "brokers.json"

_WINDOW = 30  # characters either side of a mention searched for context words
_NEIGHBOUR = 12  # a weak broker alias this close to another broker alias is part of a list of brokers
_LATIN = "abcdefghijklmnopqrstuvwxyz0123456789"
_SENTENCE_END = re.compile(r"[。!?\n]")
_BOUND_CONTEXT = 8  # characters either side of a company name given to Sudachi to check its word bounds


@dataclass(frozen=True)
class Mention:
    """One entity mention; ``start``/``end`` index the original text, ``surface`` is the original slice."""

    kind: str  # "broker" | "ticker"
    value: str  # canonical broker name or normalized ticker code
    surface: str
    start: int
    end: int
    by: str | None = None  # "code" | "name" for tickers, None for brokers

    def to_json(self) -> dict[str, Any]:
        """The mention as in the ``nlp classify`` output contract.

        >>> Mention("ticker", "0700.HK", "00700", 9, 14, "code").to_json()
        {'kind': 'ticker', 'value': '0700.HK', 'surface': '00700', 'start': 9, 'end': 14, 'by': 'code'}
        >>> Mention("broker", "楽天証券", "楽天", 0, 2).to_json()
        {'kind': 'broker', 'value': '楽天証券', 'surface': '楽天', 'start': 0, 'end': 2}
        """
        out = {
            "kind": self.kind,
            "value": self.value,
            "surface": self.surface,
            "start": self.start,
            "end": self.end,
        }
        if self.by is not None:
            out["by"] = self.by
        return out


def extract(
    text: str, master: SecuritiesMaster | None = None, *, normalized: Normalized | None = None
) -> list[Mention]:
    """Brokers and tickers mentioned in ``text``, sorted by start (spans in ``text`` coordinates).

    ``master`` decides which codes are listed (default: the bundled master; pass one loaded with the JPX or
    EDINET list to recognise every TSE code). ``normalized`` is ``normalize(text)`` when the caller has it
    already (the pipeline normalizes each post once for the classifier and the extractor).

    >>> [(m.value, m.surface, m.by) for m in extract("楽天で勝手に香港株の00700を買われた")]
    [('楽天証券', '楽天', None), ('0700.HK', '00700', 'code')]
    >>> [m.value for m in extract("楽天市場で2000円の買い物、暗証番号1234")]
    []
    >>> [(m.value, m.by) for m in extract("ＳＢＩ証券でテンセントとトヨタ(7203)を売られた $TSLA も")]
    [('SBI証券', None), ('0700.HK', 'name'), ('7203.T', 'name'), ('7203.T', 'code'), ('TSLA', 'code')]
    """
    return extract_traced(text, master, normalized=normalized)[0]


def extract_traced(
    text: str, master: SecuritiesMaster | None = None, *, normalized: Normalized | None = None
) -> tuple[list[Mention], bool]:
    """:func:`extract`, and whether the Sudachi dictionary ran for it (a company name needed word bounds).

    >>> [(m.value, m.surface) for m in extract_traced("スクリーニングで銘柄を探す")[0]], extract_traced("今日は雨")[1]
    ([], False)
    """
    norm = normalized if normalized is not None else normalize(text)
    master = master or SecuritiesMaster.bundled()
    finder = _Finder(norm, master)
    found = finder.run()
    mentions = []
    for kind, value, start, end, by in found:
        o_start, o_end = norm.span_to_original(start, end)
        mentions.append(Mention(kind, value, text[o_start:o_end], o_start, o_end, by))
    if "@" in text:
        mentions += _handle_mentions(text[: len(text) if not norm.truncated else MAX_CHARS])
    mentions.sort(key=lambda m: (m.start, m.end))
    return mentions, finder.sudachi_ran


# An @handle as X, Bluesky and Reddit write it; the character before must not make it part of an address.
_HANDLE = re.compile(r"(?<![A-Za-z0-9_.@])@(?P<handle>[A-Za-z0-9_]{1,30})(?![A-Za-z0-9_])")


def _handle_mentions(text: str) -> list[Mention]:
    """Brokers named by their official accounts: a reply to @RakutenSec is about 楽天証券.

    >>> [(m.value, m.surface) for m in _handle_mentions("@RakutenSec 勝手に売られた")]
    [('楽天証券', '@RakutenSec')]
    """
    handles = _lexicon().handles
    out = []
    for match in _HANDLE.finditer(text):
        name = handles.get(match.group("handle").lower())
        if name is not None:
            out.append(Mention("broker", name, match.group(), match.start(), match.end()))
    return out


def brokers_of(mentions: Iterable[Mention]) -> list[str]:
    """Canonical broker names, deduplicated in order of first appearance.

    >>> brokers_of(extract("SBI証券もSBIも楽天証券も"))
    ['SBI証券', '楽天証券']
    """
    return list(dict.fromkeys(m.value for m in mentions if m.kind == "broker"))


def tickers_of(mentions: Iterable[Mention]) -> list[str]:
    """Ticker codes, deduplicated in order of first appearance.

    >>> tickers_of(extract("香港株の02269と2269.HK、中国株600519を買われた"))
    ['2269.HK', '600519.SS']
    """
    return list(dict.fromkeys(m.value for m in mentions if m.kind == "ticker"))


# --- lexicon --------------------------------------------------------------------------------------------


def _trie_regex(words: Iterable[str]) -> str:
    """One regex matching the longest of ``words`` at a position; Latin edges get word boundaries.

    >>> re.findall(_trie_regex(["sbi", "sbi証券", "楽天"]), "sbi証券とsbiとxsbiと楽天")
    ['sbi証券', 'sbi', '楽天']
    """
    trie: dict[str, Any] = {}
    for word in set(words):
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = "(?![a-z0-9])" if word[-1] in _LATIN else ""

    def emit(node: dict[str, Any]) -> str:
        alternatives: list[str] = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if "" in node:
            alternatives.append(node[""])  # the shorter word is tried last, so the longest wins
        if len(alternatives) == 1:
            return alternatives[0]
        return "(?:" + "|".join(alternatives) + ")"

    latin = {c: n for c, n in trie.items() if c in _LATIN}
    other = {c: n for c, n in trie.items() if c not in _LATIN}
    parts = []
    if latin:
        parts.append("(?<![a-z0-9])" + emit(latin))
    if other:
        parts.append(emit(other))
    if not parts:
        return "(?!)"
    # The leading character class lets the regex engine skip positions fast (about 5x on a big lexicon).
    first = "".join(re.escape(char) for char in sorted(trie))
    return f"(?=[{first}])(?:{'|'.join(parts)})"


@dataclass(frozen=True)
class _BrokerEntry:
    name: str | None  # None: a span that is never a broker
    weak: bool
    particle: bool
    strict: bool = False  # the weak alias needs a strong (securities-only) word nearby
    cues: re.Pattern[str] | None = None  # extra context words of this broker alone
    other: re.Pattern[str] | None = None  # words of the alias's other senses (the bank, the shop)


@dataclass(frozen=True)
class _Lexicon:
    pattern: re.Pattern[str]
    entries: dict[str, _BrokerEntry]
    context: re.Pattern[str]
    strong: re.Pattern[str]
    names: tuple[str, ...]
    handles: dict[str, str]  # lower-cased official @handle -> canonical broker name


def _variants(alias: str) -> list[str]:
    out = [alias]
    if alias.endswith("証券") and len(alias) > 2:
        stem = alias[:-2]
        out += [stem + "證券", stem + " 証券"]
    return out


@lru_cache(maxsize=1)
def _lexicon() -> _Lexicon:
    try:
        data = json.loads(BROKER_LEXICON.read_text(encoding="utf-8"))
        brokers = data["brokers"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"{BROKER_LEXICON}: broker lexicon unreadable ({exc}): reinstall the package"
        ) from exc
    entries: dict[str, _BrokerEntry] = {}
    blockers: list[str] = list(data.get("not_brokers", []))
    for broker in brokers:
        weak = _BrokerEntry(
            broker["name"],
            True,
            broker.get("after") == "particle",
            bool(broker.get("strict")),
            _word_regex(broker.get("cues", [])),
            _word_regex(broker.get("other_senses", [])),
        )
        for alias in broker["aliases"]:
            for variant in _variants(normalize(alias).text):
                entries.setdefault(variant, _BrokerEntry(broker["name"], False, False))
        for alias in broker.get("weak", []):
            entries.setdefault(normalize(alias).text, weak)
        # 楽天 + 株式会社 is the group, but 楽天証券株式会社 is the broker: full '証券' names take no followers.
        for alias in [*broker["aliases"], *broker.get("weak", [])]:
            if alias.endswith(("証券", "證券")):
                continue
            blockers += [alias + follower for follower in broker.get("not_followed_by", [])]
            blockers += [before + alias for before in broker.get("not_preceded_by", [])]
    for blocker in blockers:
        entries[normalize(blocker).text] = _BrokerEntry(None, False, False)
    return _Lexicon(
        re.compile(_trie_regex(entries)),
        entries,
        _word_regex(data["context"]) or re.compile("(?!)"),
        _word_regex(data.get("strong_context", [])) or re.compile("(?!)"),
        tuple(b["name"] for b in brokers),
        {h.lower(): b["name"] for b in brokers for h in b.get("handles", [])},
    )


def _word_regex(words: Iterable[str]) -> re.Pattern[str] | None:
    words = [normalize(w).text for w in words]
    return re.compile("|".join(re.escape(w) for w in words if w)) if words else None


def _broker_names() -> tuple[str, ...]:
    """The lexicon's broker names, read without building the matcher (what ``_lexicon().names`` holds):
    settings import this module for BROKERS, and building the matcher at import cost every command
    (an export too) ~0.08 s CPU; extraction builds it on first use."""
    try:
        return tuple(b["name"] for b in json.loads(BROKER_LEXICON.read_text(encoding="utf-8"))["brokers"])
    except (OSError, ValueError, KeyError, TypeError):
        return _lexicon().names  # raises the lexicon's own error


#: Canonical broker names (DESIGN.md), in lexicon order.
BROKERS: tuple[str, ...] = _broker_names()


@lru_cache(maxsize=1)
def broker_search_terms() -> tuple[str, ...]:
    """The fewest words whose substrings cover every spelling of every broker in the lexicon.

    Collectors search for these (X queries, the Bluesky keyword filter), so a broker is never in the
    extractor but missing from the search: a spelling the lexicon gains is searched for at once. A word
    is left out when a shorter word of the same broker is inside it (楽天 covers 楽天証券 and 楽天sec).
    Words are in normalized form (lower-case Latin); the services compare case-insensitively.

    >>> terms = broker_search_terms()
    >>> "楽天" in terms and "楽天証券" not in terms and "丸三" in terms
    True
    """
    data = json.loads(BROKER_LEXICON.read_text(encoding="utf-8"))
    terms: list[str] = []
    for broker in data["brokers"]:
        words = sorted(
            {normalize(w).text.strip() for w in [broker["name"], *broker["aliases"], *broker.get("weak", [])]},
            key=lambda w: (len(w), w),
        )
        chosen: list[str] = []
        for word in words:
            if word and not any(c in word for c in chosen):
                chosen.append(word)
        terms += [w for w in chosen if w not in terms]
    return tuple(terms)


@lru_cache(maxsize=4)
def _name_matcher(master: SecuritiesMaster) -> tuple[re.Pattern[str], dict[str, Security]]:
    names = master.bundled_names()
    return re.compile(_trie_regex(names)), names


# --- context cues ---------------------------------------------------------------------------------------

# A particle or punctuation after a weak alias that is also a surname or a place (野村で, 大和の).
_PARTICLE = re.compile(r"(?:の|で|に|は|が|も|から|と|へ|って|や|経由|[、。,.!? ()「」『』【】\[\]/・]|$)")
# Numbers: the digits with an optional market suffix. Letters and digits around them make them part of a
# word (id1234, 7203a5); separators make them part of a date, time, decimal, phone number or range.
_NUMBER = re.compile(
    r"(?<![0-9a-z.,/\-_¥$#%+~〜×])(?<![0-9]:)"
    r"(?P<code>[1-9][0-9]{2}[ac-hj-np-uw-y]|[0-9]{1,6})"
    r"(?:\.(?P<suffix>t|jp|hk|ss|sh|sz))?"
    r"(?![0-9a-z])(?![.,:/\-~〜][0-9])"
)
_CASHTAG = re.compile(
    r"(?<![a-z0-9$])\$(?P<sym>[a-z]{1,5}(?:\.[a-z])?)(?![a-z0-9])"
    r"|(?<![a-z])(?:nasdaq|nyse|amex|nyse arca)\s?:\s?(?P<exsym>[a-z]{1,5})(?![a-z0-9])"
)
_UNIT_AFTER = re.compile(
    r"(?:つ|年|月|日|時|分|秒|円|万|億|千|百|兆|ドル|元|株|口|枚|件|人|名|回|個|本|歳|才|%|パーセント|倍|位|番|号|階|点|台|"
    r"通|社|銘柄|ヶ|ヵ|か月|カ月|週|行|文字|桁|代|期|次|周年|泊|票|箇所|ヶ所|条|項|頁|ページ|話|巻|ポイント|pt|bp|"
    r"円台|ドル台|時間|度|°|キロ|メートル|グラム|リットル|ミリ|センチ|m|g|kg|km|cm|mm|gb|mb|kb|ml|l)"
)
_NEG_BEFORE = re.compile(
    r"(?:暗証|(?<![a-z])pin|パスワード|パス|認証|確認コード|ワンタイム|(?<![a-z])otp|電話|(?<![a-z])tel|番号|郵便|〒|(?<![a-z])id|"
    r"部屋|第|(?<![a-z])no\.?|約(?!定)|(?<!会)計|残高|損失|"
    r"利益|評価額|価格|株価|終値|始値|高値|安値|値段|単価|平均|指値|成行|金額|総額|差額|手数料|被害額|時価|"
    r"(?<![a-z])ver|バージョン|型番|品番|ロット|定員|人口|身長|体重|順位|背番号|残り|あと|ポイント|コード送信)"
    r"[^0-9]{0,6}$"
)
_CODE_CUE = re.compile(
    r"(?:銘柄コード|証券コード|コード|銘柄|code|ticker|ティッカー|東証[^0-9\s]{0,6}|tse|jp|日本株)"
    r"\s?[:=]?\s?(?:は|の|:)?\s?$"
)
# A code in brackets, alone or in a list: (7203), 【2667・5010・3779】
_BRACKET_BEFORE = re.compile(r"[(【\[「『<](?:[0-9a-z]{4,6}\s?[・、/]\s?)*$")
_BRACKET_AFTER = re.compile(r"(?:\s?[・、/]\s?[0-9a-z]{4,6})*[)】\]」』>]")
# What follows a number up to a case particle or a stop belongs to it (1715と1218、どっちも香港株);
# past that it is another phrase (7203を売られて香港株を).
_CLAUSE_END = re.compile(r"[をが。!?\n]")
_HK_CUE = re.compile(r"香港|hk|港股|h株|恒生|ハンセン|レッドチップ|中国株")
_CN_CUE = re.compile(
    r"中国株|中国本土|上海|深セン|深圳|深せん|a株|人民元|創業板|科創板|滬|沪|本土株|上証|深証"
)
_STOCK = re.compile(
    r"株|銘柄|買われ|売られ|買わ|売ら|買付|買い付け|購入|売却|約定|保有|損切|含み損|上場|東証|ストップ高|s高|爆上げ|急騰|暴落|"
    r"決算|配当|優待|現物|信用|取引|注文|ナンピン|利確|コード|出来高|nisa|板|チャート|含み益|ipo"
)
_STOCK_STRICT = re.compile(
    r"(?<!式会)株(?!式会社)|銘柄|株価|上場|東証|決算|配当|優待|ストップ高|現物|信用取引|ナンピン|利確|損切|含み損"
)
_TRADE_AFTER = re.compile(
    r"\s?(?:を|が|は|も)?\s?(?:勝手に|知らない間に|知らぬ間に|大量に|全部|全て|すべて)?\s?"
    r"(?:の)?(?:買わ|売ら|買い|売り|購入|売却|約定|買付|買い付け|保有|損切|ナンピン|爆上げ|急騰|暴落|ストップ高|s高|出来高)"
)
# Words right after a broker's own name that are about the company's shares, not the account there.
_OWN_SHARES = re.compile(r"\s?(?:株(?!式)|の?株価|の?株主|の?決算|の?時価総額|の?自社株|の?ipo)")
# A name as the object or subject of a trade: アップルを買った, テンセントも少し売った, メルカリが急騰. Only
# を/も/が: 「ZOZOの買い物」「メルカリで売られてる」 are shopping.
_NAME_TRADED = re.compile(
    r"\s?(?:株)?\s?(?:を|も|が)\s?(?:少し|少しずつ|少額|ちょっと|追加で|全部|全て|すべて|勝手に|知らない間に)?\s?"
    r"(?:買っ|売っ|買う|売る|買い増|買われ|売られ|購入さ|売却さ|損切|ナンピン|爆上げ|急騰|暴落|ストップ高)"
)
# A person right before a bracket: the number in it is an age (男性(45), 祖母(88), aさん(67), 60代女性(62)).
_PERSON_BEFORE = re.compile(
    r"(?:さん|さま|様|氏|くん|君|ちゃん|容疑者|被告人?|被害者|受刑者|男性|女性|男児|女児|男|女|少年|少女|"
    r"祖母|祖父|母親?|父親?|妻|夫|姉|兄|弟|妹|息子|娘|孫|嫁|義母|義父|叔父|叔母|伯父|伯母|おじ|おば|友人|知人|"
    r"同僚|上司|社員|職員|店員|役員|社長|会長|代表|教員|教諭|医師|主婦|無職|自営業|パート|アルバイト|学生|"
    r"患者|選手|高齢者|(?<![a-z])[a-z])\s?\(\s?$"
)
_NAME_LIST_GAP = re.compile(r"\s?(?:と|や|、|,|・|/|とか|か)\s?")
_DIGIT = re.compile(r"[0-9]")
_PLACEHOLDER = re.compile(r"<url[^>]*>|@user")


class _Finder:
    """One pass over one normalized text."""

    def __init__(self, norm: Normalized, master: SecuritiesMaster) -> None:
        self.text = norm.text
        self.master = master
        self.found: list[tuple[str, str, int, int, str | None]] = []
        self.broker_spans: list[tuple[int, int, bool]] = []
        self._strong_text: bool | None = None
        self.sudachi_ran = False
        self.masked = (
            [m.span() for m in _PLACEHOLDER.finditer(self.text)]
            if ("<url" in self.text or "@user" in self.text)
            else []
        )

    def run(self) -> list[tuple[str, str, int, int, str | None]]:
        if not self.text:
            return []
        brokers = self._brokers()
        all_names = self._names()
        codes = self._codes(all_names) if _DIGIT.search(self.text) else []
        # A name right next to its own code (茅台 600519) is a stock mention even without a stock word.
        names = [
            n[:5]
            for n in all_names
            if n[5] or any(n[1] == c[1] and (c[2] - n[3] <= 2 and n[2] - c[3] <= 2) for c in codes)
        ]
        # A company name that contains a broker word (マネックスグループ) is the company, not the broker; so is
        # a broker's own name kept as a ticker (松井証券の株価), as with 楽天の株価 in the lexicon.
        brokers = [b for b in brokers if not any(n[2] <= b[2] and b[3] <= n[3] for n in names)]
        cashtags = self._cashtags() if ("$" in self.text or ":" in self.text) else []
        return [m for m in (*brokers, *names, *codes, *cashtags) if not self._is_masked(m[2], m[3])]

    def _is_masked(self, start: int, end: int) -> bool:
        return any(s < end and start < e for s, e in self.masked)

    def _window(self, start: int, end: int, size: int = _WINDOW) -> str:
        return self.text[max(0, start - size) : start] + " " + self.text[end : end + size]

    # brokers

    def _brokers(self) -> list[tuple[Any, ...]]:
        """Broker mentions; ``self.broker_spans`` keeps every lexicon span: aliases counted or not, and
        spans that are never a broker (楽天市場, 楽天の株価), flagged False."""
        lexicon = _lexicon()
        hits = []
        for match in lexicon.pattern.finditer(self.text):
            entry = lexicon.entries[match.group()]
            self.broker_spans.append((*match.span(), entry.name is not None))
            if entry.name is not None:
                hits.append((entry, *match.span()))
        out = []
        for entry, start, end in hits:
            if entry.weak:
                if entry.particle and not _PARTICLE.match(self.text, end):
                    continue
                if not self._weak_counts(lexicon, entry, start, end, hits):
                    continue
            out.append(("broker", entry.name, start, end, None))
        return out

    def _weak_counts(self, lexicon: _Lexicon, entry: _BrokerEntry, start: int, end: int, hits: list[tuple[Any, ...]]) -> bool:
        """Whether an ambiguous alias (楽天, SBI, みずほ) means the securities firm here."""
        # 株式会社 is no stock word: 「株式会社〇〇の楽天ポイント」
        window = self._window(start, end).replace("株式会社", "")
        if lexicon.strong.search(window):
            return True
        if entry.other is not None and (
            entry.other.search(window)
            # a post about shopping or points that never talks securities (楽天市場 ... 楽天に連絡)
            or (entry.other.search(self.text) and not self._text_is_strong(lexicon))
        ):
            return False
        if entry.cues is not None and entry.cues.search(window):
            return True
        # 「楽天、SBI、野村で被害」: a list of brokers in a text about securities
        listed = any(
            other is not entry and (0 <= o_start - end <= _NEIGHBOUR or 0 <= start - o_end <= _NEIGHBOUR)
            for other, o_start, o_end in hits
        )
        if listed and lexicon.context.search(self.text):
            return True
        if entry.strict:  # 口座, ログイン, 不正 fit the bank as well
            return False
        if lexicon.context.search(window):
            return True
        # A short post whose securities words sit beyond the window (「SBIのアプリから…\n…売買されてた」);
        # not for surnames and places (野村, 松井, 大和), which need the word close by.
        return not entry.particle and self._text_is_strong(lexicon)

    def _text_is_strong(self, lexicon: _Lexicon) -> bool:
        if self._strong_text is None:
            self._strong_text = bool(lexicon.strong.search(self.text.replace("株式会社", "")))
        return self._strong_text

    # tickers by name

    def _names(self) -> list[tuple[Any, ...]]:
        """Every bundled company name in the text; the 6th field says whether a stock word is near."""
        pattern, names = _name_matcher(self.master)
        out: list[tuple[Any, ...]] = []
        own = set()  # indexes of brokers' own names: they take no evidence from a list
        for match in pattern.finditer(self.text):
            sec = names[match.group()]
            start, end = match.span()
            if any(
                b_start <= start and end <= b_end and (named or end - start < b_end - b_start)
                for b_start, b_end, named in self.broker_spans
            ):
                own.add(len(out))
                # A broker's own name (松井証券, 楽天) is the broker, the shop, the bank...; its shares need words
                # about them right after (松井証券株, 楽天の株価) or its code next to it: 「松井証券の株を売られた」
                # is the account there.
                out.append(("ticker", sec.code, start, end, "name", bool(_OWN_SHARES.match(self.text, end))))
                continue
            window = self._window(start, end, 25)
            cue = _STOCK_STRICT if sec.context == "stock" else _STOCK
            near = bool(
                cue.search(window)
                or (_HK_CUE.search(window) and sec.market in ("HK", "SS", "SZ"))
                or _NAME_TRADED.match(self.text, end)
            )
            # Word bounds are checked only where the name could count (near a stock word, or beside a code).
            if (near or _DIGIT.search(self.text)) and not self._on_word_bounds(start, end):
                continue  # スクリーニング holds リーニン, but no word of it is one
            out.append(("ticker", sec.code, start, end, "name", near))
        # Names listed together share their evidence: 「アップルとテスラを全部売られて」
        linked = [
            i
            for i in range(1, len(out))
            if i not in own
            and i - 1 not in own
            and _NAME_LIST_GAP.fullmatch(self.text, out[i - 1][3], out[i][2])
        ]
        for order in (reversed(linked), linked):
            for i in order:
                if out[i][5] != out[i - 1][5]:
                    out[i - 1] = (*out[i - 1][:5], True)
                    out[i] = (*out[i][:5], True)
        return out

    def _on_word_bounds(self, start: int, end: int) -> bool:
        """Whether a name match starts and ends where Sudachi (short units, mode A) puts word boundaries.

        Latin names have regex word boundaries already; a kana or kanji name inside a longer word (リーニン in
        スクリーニング) is no mention. Sudachi runs only here, only for texts with a name match.
        """
        text = self.text
        if text[start] in _LATIN and text[end - 1] in _LATIN:
            return True
        from nlp.tokenize import get_tokenizer

        # Only the name and a few characters either side are read: word bounds are local, and a whole long
        # post through Sudachi for one name cost a tenth of the stage.
        lo, hi = max(0, start - _BOUND_CONTEXT), min(len(text), end + _BOUND_CONTEXT)
        bounds = get_tokenizer().boundaries(text[lo:hi], "A")
        self.sudachi_ran = True
        return start - lo in bounds and end - lo in bounds

    # tickers by code

    def _cashtags(self) -> list[tuple[Any, ...]]:
        out = []
        for match in _CASHTAG.finditer(self.text):
            symbol = normalize_code(match.group("sym") or match.group("exsym"), "US")
            if symbol:
                out.append(("ticker", symbol, match.start(), match.end(), "code"))
        return out

    def _codes(self, names: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        out = []
        for match in _NUMBER.finditer(self.text):
            code = self._classify(match, names)
            if code:
                out.append(("ticker", code, match.start(), match.end(), "code"))
        return out

    def _sentence_before(self, start: int, size: int) -> str:
        before = self.text[max(0, start - size) : start]
        stops = [m.end() for m in _SENTENCE_END.finditer(before)]
        return before[stops[-1] :] if stops else before

    def _classify(self, match: re.Match[str], names: list[tuple[Any, ...]]) -> str | None:
        text = self.text
        raw, suffix = match.group("code"), match.group("suffix")
        start, end = match.span()
        if _UNIT_AFTER.match(text, end):
            return None
        before = self._sentence_before(start, 14)
        if _NEG_BEFORE.search(before):
            return None
        if suffix:
            market = {"t": "T", "jp": "T", "hk": "HK", "ss": "SS", "sh": "SS", "sz": "SZ"}[suffix]
            return normalize_code(raw, market)
        named = self._adjacent_name(start, end, names)
        if named is not None and named.rsplit(".", 1)[0].lstrip("0") == raw.lstrip("0"):
            return named  # テンセント(00700), トヨタ7203: the name says which market
        size = len(raw)
        bracketed = bool(
            _BRACKET_BEFORE.search(text, max(0, start - 30), start) and _BRACKET_AFTER.match(text, end)
        )
        line_start = start == 0 or text[start - 1] == "\n"  # 5ch style: 「7992 出来高すごい」
        strong = bracketed or named is not None or bool(_CODE_CUE.search(before))
        stock = bool(_STOCK.search(self._window(start, end)))
        trade = bool(_TRADE_AFTER.match(text, end))
        clause_after = _CLAUSE_END.split(text[end : end + 14], maxsplit=1)[0]
        if size == 6 and raw.isdigit():
            mainland = "SS" if raw[:2] in ("60", "68") else "SZ" if raw[:2] in ("00", "30") else None
            if mainland is None:
                return None
            code = f"{raw}.{mainland}"
            near = self._sentence_before(start, 20) + " " + clause_after
            if (
                _CN_CUE.search(near)
                or strong
                or trade
                or (stock and (line_start or self.master.is_listed(code)))
            ):
                return code
            return None
        hk_near = bool(_HK_CUE.search(self._sentence_before(start, 15)) or _HK_CUE.search(clause_after))
        if size == 5:
            if hk_near or raw[0] == "0":  # TSE codes have four characters: 0xxxx is a Hong Kong code
                return normalize_code(raw, "HK")
            return None
        if size <= 3 and raw.isdigit():
            if _PERSON_BEFORE.search(text, max(0, start - 12), start):
                return None  # 祖母(88), 男性(45), aさん(67): an age in news style, not a Hong Kong code
            hk_close = _HK_CUE.search(self._sentence_before(start, 8))
            if (hk_close and (strong or stock or trade)) or (bracketed and hk_near):
                return normalize_code(raw, "HK")
            return None
        # four characters
        if raw.isdigit():
            if raw[0] == "0":  # no TSE code starts with 0
                return normalize_code(raw, "HK") if (hk_near or strong or stock or trade) else None
            if hk_near and not (self.master.is_listed(f"{raw}.T") and not _HK_CUE.search(before)):
                return normalize_code(raw, "HK")
        tse_code = normalize_code(raw, "T")
        if tse_code is None or (raw.isdigit() and int(raw) < 1300):
            return None
        listed = self.master.is_listed(tse_code)
        if raw.isdigit() and 1900 <= int(raw) <= 2099:  # a year unless the evidence is strong
            return tse_code if listed and (strong or (line_start and stock)) else None
        if strong or trade or (stock and (listed or line_start)) or (line_start and listed):
            return tse_code
        return None

    def _adjacent_name(self, start: int, end: int, names: list[tuple[Any, ...]]) -> str | None:
        text = self.text
        code: str
        for _, code, n_start, n_end, *_ in names:
            gap_before = text[n_end:start]
            gap_after = text[end:n_start]
            if n_end <= start and len(gap_before) <= 2 and all(c in " :(【[「" for c in gap_before):
                return code
            if n_start >= end and len(gap_after) <= 2 and all(c in " :)】]」" for c in gap_after):
                return code
        return None
