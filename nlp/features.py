"""Who experienced the event: a few dense "voice" features beside the char n-gram TF-IDF.

Char n-grams know the vocabulary of the wave (勝手に, 乗っ取, 売られ) but not whose account it was. On real
pages the commonest false alarm is a story of SOMEONE ELSE's case: a news narrative in the third person
("30代の男性は…売却されていた"), a blog retelling it, an explainer's hypothetical ("もし乗っ取られたら").
Those texts share the event words with an own report and differ in who is the subject, in reported speech
and in register - cues a bag of n-grams dilutes in a long text. These features say, per post:

* whether first-person (私, 自分, 俺, うち…) or directly-known people (母, 夫, 友人…) are present at all, and
  whether they share a SENTENCE with an event word (勝手に, 身に覚え, 売られ, 出金…);
* the same for third-person subjects (男性, 女性, 30代の, (42), 被害者, 仮名…), reported speech (という,
  によると, と話す…) and hypotheticals / advice (もし, 場合, 対策, ましょう…);
* first-person words outside quotations only (a news story quotes the victim's "私");
* negated own cases (被害はなかった, 大丈夫でした) and bank words (銀行, デビット, 振込) near an own event;
* the text length, so a long text without a first-person subject can read differently from a short post.

Every feature is 0/1 or a small bounded number, so a linear model can weigh them beside the TF-IDF block.
The order of :data:`FEATURE_NAMES` is part of a saved model: a model stores the names it was trained with
and refuses to load when they differ.

>>> names = dict(zip(FEATURE_NAMES, voice_features(["私の楽天証券の口座で勝手に中国株を買われた"])[0].tolist()))
>>> names["fp_event_sentence"], names["tp_event_sentence"]
(1.0, 0.0)
>>> names = dict(zip(FEATURE_NAMES, voice_features(["30代の男性は「勝手に売られた」と話す"])[0].tolist()))
>>> names["fp_frame"], names["tp_event_sentence"], names["reported"]
(0.0, 1.0, 1.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

__all__ = [
    "FEATURE_NAMES", "event_view", "frame_view", "utterance", "voice_features", "word_ngrams", "word_tokens",
]  # fmt: skip

_QUOTED = re.compile(
    r"「[^「」]{0,400}」|『[^『』]{0,400}』|“[^“”]{0,400}”|《[^《》]{0,400}》|\"[^\"\n]{0,400}\""
)


def frame_view(text: str) -> str:
    """The text around quotations: what the writer says in their own voice.

    A text that is one speaker's words and nothing else has no frame around it (see :func:`utterance`): a
    post pasted on its own, a title in brackets or a transcript line is read as what the speaker says.

    >>> frame_view('被害者の男性は「勝手に売られた」と話す')
    '被害者の男性は「」と話す'
    >>> frame_view('「母の口座が勝手に売買されました」')
    '母の口座が勝手に売買されました'
    """
    spoken = utterance(text)
    if spoken is not None:
        return spoken
    return _QUOTED.sub("「」", text)


_OPENERS = frozenset('「『“《"')
# A speaker tag in front of quotations: 【口座を乗っ取られた人】, 山下さん, 被害者の男性(58), 証券会社の社員の話:
_SPEAKER_TAG = re.compile(
    r"(?:【[^【】\n]{1,30}】|[^\n。!?「『“《\"]{1,24}?(?:さん|氏|様|者|人|男性|女性|[)）]|[:：]))(?=\s*[「『“《\"])"
)


def utterance(text: str) -> str | None:
    """The words of a text that is only quotations, after at most a speaker tag; None for any other text.

    The labeling protocol labels an excerpt that is only one person's own post or utterance by what that
    person says: a transcript line (名前「…」「…」), a post shown on its own in brackets. A quotation framed by
    the writer's own sentence (…と話す, これ怖い「…」) is someone else's voice and is not an utterance.

    >>> utterance('山下さん 「口座を不正に操作されました」 「もう頭が真っ白です」')
    '口座を不正に操作されました\\nもう頭が真っ白です'
    >>> utterance('「母の口座が勝手に売買されました」'), utterance('男性は「勝手に売られた」と話す')
    ('母の口座が勝手に売買されました', None)
    >>> utterance('これ怖すぎる 「口座を乗っ取られた」') is None
    True
    """
    stripped = text.strip()
    tag = _SPEAKER_TAG.match(stripped)
    rest = stripped[tag.end() :].lstrip() if tag else stripped
    if rest[:1] not in _OPENERS:
        return None
    parts, pos = [], 0
    for quote in _QUOTED.finditer(rest):
        if rest[pos : quote.start()].strip():
            return None
        parts.append(quote.group()[1:-1].strip())
        pos = quote.end()
    return "\n".join(parts) if parts and not rest[pos:].strip() else None


# Patterns run on normalized text (NFKC, Latin lower-cased).
_FIRST = re.compile(
    r"私|わたし|わたくし|あたし|自分|俺|おれ|オレ|僕|ぼく|ボク|ワイ|当方|我が家|うち(?=の|も|は|が|で)|小生"
)
_KIN = re.compile(
    r"(?<![父祖分])母(?!数|体|国|校)|(?<![祖])父(?!兄)|(?<![丈工])夫(?!婦)|(?<![夫])妻|嫁|旦那|主人|両親|親(?=の|が|は)|"
    r"義母|義父|祖母|祖父|彼氏|彼女|友人|友達|同僚|知人|兄|姉|弟|妹|息子|娘|家族|叔母|叔父|伯母|伯父|おかん|おとん|親父|おふくろ"
)
_THIRD = re.compile(
    r"男性|女性|[0-9]+代の|[0-9]+代(?=男|女|会社|主婦)|[0-9]+歳|\([0-9]{2}\)|さん\((?:仮名|[0-9])|仮名|氏(?=は|が|の|に)|"
    r"被害者|被害に遭った人|被害にあった人|利用者|顧客|投資家|ユーザー|人(?=は|が)|方(?=は|が|も)|記者"
)
_REPORTED = re.compile(
    r"という|といい|とのこと|によると|によれば|と話す|と話した|と話して|と語る|と語った|と明か|と振り返|と証言|と訴え|"
    r"報じ|報道|明らかにした|発表|判明|相次|件数|警察庁|金融庁|証券業協会|ニュース|記事|取材|調べ"
)
_HYPO = re.compile(
    r"もし|万が一|万一|場合|ような|ように|方法|対策|解説|まとめ|ましょう|ください|注意|気をつけ|お持ちの方|疑問|"
    r"とは|について|ポイント|手口|予防|防ぐ|防止|チェック|確認しよう|おすすめ|設定しよう"
)
_EVENT = re.compile(
    r"勝手に|身に覚え|覚えのない|知らない(?:間|うち|銘柄|株|取引|約定|ログイン)|知らぬ間|不正(?:ログイン|アクセス|取引|売買|出金|送金|引き出し|利用)|"
    r"乗っ取|売られ|買われ|売却され|購入され|出金され|引き出され|振り込まれ|振込まれ|送金され|ログインされ|変更され|"
    r"抜かれ|盗まれ|やられ|被害|約定|中国株|香港株"
)
_OWN_PRED = re.compile(
    r"(?:され|られ|れ)(?:た|て|ました|ちゃ|てしま)|てしまった|ちゃった|やられ|遭いました|遭った|あった|なっていた|なってた|消えてた|消えていた"
)
_NEGATED = re.compile(
    r"大丈夫でした|大丈夫だった|無事でした|無事だった|被害はなかった|被害はありません|被害は無|被害なし|セーフ|助かった|"
    r"問題なかった|問題ありませんでした|勘違い|自分の(?:注文|逆指値|指値|設定)|気のせい"
)
_BANK = re.compile(r"銀行|デビット|振込|振り込|atm|ネットバンキング|預金|引き出|出金|送金|残高")
_SENTENCE = re.compile(r"[。!?\n]+")

FEATURE_NAMES: tuple[str, ...] = (
    "fp",
    "fp_frame",
    "kin",
    "third",
    "reported",
    "hypo",
    "event",
    "own_pred",
    "negated",
    "bank",
    "fp_event_sentence",
    "kin_event_sentence",
    "tp_event_sentence",
    "reported_event_sentence",
    "hypo_event_sentence",
    "bank_own_sentence",
    "no_fp_long",
    "tp_without_fp",
    "fp_share",
    "log_length",
)


def _sentences_with(pattern: re.Pattern[str], text: str, bounds: np.ndarray) -> set[int]:
    return {int(np.searchsorted(bounds, m.start(), side="right")) for m in pattern.finditer(text)}


def _row(text: str) -> list[float]:
    bounds = np.array([m.end() for m in _SENTENCE.finditer(text)], dtype=np.int64)
    fp = _sentences_with(_FIRST, text, bounds)
    kin = _sentences_with(_KIN, text, bounds)
    third = _sentences_with(_THIRD, text, bounds)
    reported = _sentences_with(_REPORTED, text, bounds)
    hypo = _sentences_with(_HYPO, text, bounds)
    event = _sentences_with(_EVENT, text, bounds)
    own = _sentences_with(_OWN_PRED, text, bounds)
    bank = _sentences_with(_BANK, text, bounds)
    negated = bool(_NEGATED.search(text))
    fp_frame = (
        bool(fp) and bool(_FIRST.search(frame_view(text))) if "「" in text or "『" in text else bool(fp)
    )
    long_text = len(text) >= 120
    n_fp, n_tp = len(_FIRST.findall(text)) + len(_KIN.findall(text)), len(_THIRD.findall(text))
    return [
        float(bool(fp)),
        float(fp_frame),
        float(bool(kin)),
        float(bool(third)),
        float(bool(reported)),
        float(bool(hypo)),
        float(bool(event)),
        float(bool(own)),
        float(negated),
        float(bool(bank)),
        float(bool(fp & event)),
        float(bool(kin & event)),
        float(bool(third & event)),
        float(bool(reported & event)),
        float(bool(hypo & event)),
        float(bool(bank & own & (fp | kin | event))),
        float(long_text and not fp and not kin),
        float(bool(third) and not fp and not kin),
        (n_fp + 0.5) / (n_fp + n_tp + 1.0),
        min(1.0, math.log1p(len(text)) / 8.0),
    ]


_MASKED = re.compile("\x00([0-9]+)\x01")
# Reported speech that makes a quotation someone else's (という alone also ends an own question: 「…」という状況です).
_REPORTING = re.compile(_REPORTED.pattern.replace("という|といい|", ""))


def event_view(text: str) -> str:
    """The writer's own sentences that tell an event, joined by newlines.

    A long blog post tells its own case in one or two sentences after a long run-up, and a column mentions
    the writer's case in one clause; in the TF-IDF of the whole text those sentences weigh little. This view
    holds only the sentences with an event word (勝手に, 売られ, 身に覚え, 被害, 出金...), so the model sees how
    the event is told - by whom, in which voice - at full weight whatever the length of the text.

    Quotations are someone else's voice and collapse to 「」, except where the writer frames them as their
    own: a first-person or close-person word around the quotation in its sentence and no third person and
    no reporting verb there (自分の状況は「…」という流れです, 私は「…」と伝えた, 夫が「…」と青ざめている).

    >>> event_view("投資歴は6年です。配当が楽しみでした。朝見たら保有株を勝手に売られていました。")
    '朝見たら保有株を勝手に売られていました'
    >>> event_view("男性は「私の株が勝手に売られた」と話す。")
    ''
    >>> event_view("「母の口座が勝手に売買されました」")
    '母の口座が勝手に売買されました'
    >>> event_view("質問です。自分の状況は「見たら株が勝手に売られていた」という流れです。")
    '自分の状況は「見たら株が勝手に売られていた」という流れです'
    """
    spoken = utterance(text)
    if spoken is not None:
        text = spoken  # one speaker's words and nothing else: read as they stand (see frame_view)
    quotes: list[str] = []

    def mask(m: re.Match[str]) -> str:
        quotes.append(m.group())
        return f"\x00{len(quotes) - 1}\x01"

    masked = _QUOTED.sub(mask, text) if any(ch in text for ch in _OPENERS) else text
    out = []
    for part in _SENTENCE.split(masked):
        sentence = part.strip()
        if not sentence:
            continue
        if "\x00" in sentence:
            frame = _MASKED.sub("「」", sentence)
            own = bool(_FIRST.search(frame) or _KIN.search(frame)) and not (
                _THIRD.search(frame) or _REPORTING.search(frame)
            )
            sentence = _MASKED.sub(lambda m: quotes[int(m.group(1))], sentence) if own else frame
        if _EVENT.search(sentence):
            out.append(sentence)
    return "\n".join(out)


def voice_features(texts: Sequence[str]) -> np.ndarray:
    """One row of :data:`FEATURE_NAMES` per normalized text (float32)."""
    out = np.zeros((len(texts), len(FEATURE_NAMES)), dtype=np.float32)
    for i, text in enumerate(texts):
        if text:
            out[i] = _row(text)
    return out


# --------------------------------------------------------------------------------------------------
# words: Sudachi morphemes of the writer's own words, with markers of who did what to whom

_FP_WORDS = frozenset("私 わたし わたくし あたし 僕 ぼく 俺 おれ 自分 ワイ 当方 小生 我が家 うち".split())
_KIN_WORDS = frozenset(
    "母 父 夫 妻 嫁 旦那 主人 両親 親 義母 義父 祖母 祖父 息子 娘 兄 姉 弟 妹 家族 叔母 叔父 伯母 伯父 "
    "彼氏 彼女 友人 友達 知人 同僚 母親 父親 おかん おとん 親父 お袋 じいちゃん ばあちゃん".split()
)
_PASSIVE = frozenset(("れる", "られる"))
_CAUSATIVE = frozenset(("せる", "させる"))
_REPORTIVE = frozenset(("らしい", "相次ぐ", "次ぐ"))
_HONORIFIC = frozenset(("御", "ご", "お"))


def word_tokens(text: str) -> list[str]:
    """Sudachi normalized forms (split mode C) of ``text`` with quotations collapsed, plus markers.

    Markers follow the word that triggers them: 〈受身〉 after a passive auxiliary on a verb (買われた, 売られてた),
    〈使役〉 after a causative one, 〈一人称〉 / 〈身内〉 after a first-person or close-person noun and 〈の〉 when
    a possessive follows it (私の口座, 母の口座), 〈敬称〉 after a close-person noun with an honorific prefix
    (ご主人: someone else's husband), 〈伝聞〉 after a reportive ending (らしい, とのこと, 相次ぐ, the hearsay そう
    of 売られていたそうです - Sudachi tags it a noun stem, unlike the そう of 売られそうです).

    >>> word_tokens("私の口座で勝手に中国株を買われた")
    ['私', '〈一人称〉', 'の', '〈の〉', '口座', 'で', '勝手に', '中国', '株', 'を', '買う', 'れる', '〈受身〉', 'た']
    >>> word_tokens("ご主人は株を売られていたそうです")[:3], word_tokens("ご主人は株を売られていたそうです")[-3:]
    (['御', '主人', '〈敬称〉'], ['そう', '〈伝聞〉', 'です'])
    >>> word_tokens("男性は「勝手に売られた」と話す")[-4:]
    ['「」', 'と', '話す', '〈伝聞〉']
    """
    from nlp.tokenize import get_tokenizer

    out: list[str] = []
    prev_pos = ""
    owner = ""  # marker of a first-person / close-person noun just seen
    for tok in get_tokenizer().tokens(frame_view(text), "C"):
        if tok.surface.isspace():
            continue
        form = tok.normalized_form.replace(" ", "_")
        pos = tok.pos[0]
        out.append(form)
        if owner and form == "の":
            out.append("〈の〉")
        owner = ""
        if form in _FP_WORDS and pos in ("代名詞", "名詞"):
            out.append("〈一人称〉")
            owner = "fp"
        elif form in _KIN_WORDS and pos == "名詞" and len(out) > 1 and out[-2] in _HONORIFIC:
            out.append("〈敬称〉")  # ご主人, ご両親, ご家族: someone else's family, told about with respect
        elif form in _KIN_WORDS and pos == "名詞":
            out.append("〈身内〉")
            owner = "kin"
        elif pos == "助動詞" and prev_pos in ("動詞", "助動詞") and form in _PASSIVE:
            out.append("〈受身〉")
        elif pos == "助動詞" and prev_pos in ("動詞", "助動詞") and form in _CAUSATIVE:
            out.append("〈使役〉")
        elif (
            form in _REPORTIVE
            or (form == "そう" and tok.pos[1] == "助動詞語幹" and pos == "名詞")
            or (form == "こと" and out[-3:-1] == ["と", "の"])
            or (form in ("言う", "話す", "語る") and len(out) > 1 and out[-2] == "と")
        ):
            out.append("〈伝聞〉")
        prev_pos = pos
    return _join_quotes(out)


def _join_quotes(tokens: list[str]) -> list[str]:
    # frame_view leaves 「」 where a quotation was; Sudachi splits it into two symbols.
    out: list[str] = []
    for form in tokens:
        if form == "」" and out and out[-1] == "「":
            out[-1] = "「」"
        else:
            out.append(form)
    return out


def word_ngrams(tokens: Sequence[str]) -> list[str]:
    """Word 1..3-grams joined by spaces (the analyzer of the "words" TF-IDF view).

    >>> word_ngrams(["a", "b", "c"])
    ['a', 'b', 'c', 'a b', 'b c', 'a b c']
    """
    tokens = list(tokens)
    grams = tokens[:]
    grams += [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    grams += [f"{a} {b} {c}" for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False)]
    return grams
