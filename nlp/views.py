"""What the classifier reads: the writer's own words, without links, handles and repost wrappers.

A link, an @mention, an emoji or a ``RT @user:`` prefix says nothing about whose account was used, yet a
bag of character n-grams learns them as cues (a pasted link looked like news, a reply to a broker's support
account like discussion). So the classifier never sees them: :func:`classifier_text` drops the
``<url:...>`` and ``@user`` placeholders that :func:`nlp.normalize.normalize` leaves (emoji are gone
already), strips a leading ``RT @user:`` (a repost carries its original's label; counting never counts it
as a reporter, see :func:`repost_handle`), and puts the quoted part of a quote post (``comment QT @user:
quoted``, ``comment RT @user: quoted``) inside 「」, where text is someone else's voice.

Entities are not read from this view: brokers named by a hashtag or a broker's @handle still count.

>>> classifier_text("@user 楽天証券で勝手に売られた <url:t.co>")
'楽天証券で勝手に売られた'
>>> classifier_text("rt @user: 楽天証券で勝手に売られた")
'楽天証券で勝手に売られた'
>>> classifier_text("これ怖すぎる qt @user: 口座を乗っ取られた")
'これ怖すぎる 「口座を乗っ取られた」'
"""

from __future__ import annotations

import re

from nlp.normalize import Normalized, normalize

__all__ = ["classifier_input", "classifier_text", "classifier_view", "has_japanese", "repost_handle"]

#: Bumped whenever the view - or a feature nlp/features.py derives from it (frame, event, words) - changes what
#: a model reads, so the model version (a hash of data, seed, settings and this, and of the weights) changes
#: with it.
VIEW_VERSION = 5

_REPOST_PREFIX = re.compile(r"^(?:rt|repost|rp)\s?@user\s?:?\s*")
_QUOTE_WRAPPER = re.compile(r"\s(?:qt|rt)\s?@user\s?:?\s*(?P<quoted>.+)$", re.DOTALL)
_PLACEHOLDER = re.compile(r"<url(?::[^>\s]*)?>|@user")
_BLANKS = re.compile(r"[ ]{2,}|[ ]*\n[ \n]*")
_RAW_RT = re.compile(r"^\s*RT\s?@(?P<handle>[A-Za-z0-9_]{1,30})\s?:", re.IGNORECASE)
_JAPANESE = re.compile(r"[\u3041-\u3096\u30a1-\u30fa\u30fc\u4e00-\u9fff\u3005]")


def classifier_text(normalized: str) -> str:
    """The classifier's view of a ``normalize()``d text (see the module docstring)."""
    text = _REPOST_PREFIX.sub("", normalized, count=1)
    if " qt" in text or " rt" in text:
        text = _QUOTE_WRAPPER.sub(lambda m: " 「" + m.group("quoted").strip() + "」", text, count=1)
    if "<url" in text or "@user" in text:
        text = _PLACEHOLDER.sub(" ", text)
        text = _BLANKS.sub(lambda m: "\n" if "\n" in m.group() else " ", text).strip()
    return text


def classifier_view(norm: Normalized, original: str) -> str:
    """:func:`classifier_text` of a normalized post, without the block of hashtags (and links) at its end.

    Tags appended to a post (``… #拡散希望 #NISA``) are labels for the timeline, not the writer's account of
    what happened, and an appended tag must not flip the label; a tag inside a sentence (``#楽天証券 で…``)
    is a word and stays. Brokers named by a trailing tag still count: entities read the whole text.

    >>> classifier_input("楽天証券で勝手に売られた #拡散希望 #ＮＩＳＡ https://t.co/x")
    '楽天証券で勝手に売られた'
    >>> classifier_input("#楽天証券 で勝手に売られた")
    '楽天証券 で勝手に売られた'
    """
    text = norm.text
    end = len(text)
    while True:
        while end and text[end - 1] in " \n":
            end -= 1
        start = end
        while start and text[start - 1] not in " \n":
            start -= 1
        if start == end or start == 0:
            break
        token = text[start:end]
        origin = norm.offsets[start]
        tagged = origin > 0 and original[origin - 1] in "#＃"
        if not (tagged or _PLACEHOLDER.fullmatch(token)):
            break
        end = start
    return classifier_text(text[:end] if end < len(text) else text)


def classifier_input(text: str) -> str:
    """What training, evaluation and the pipeline classify: :func:`classifier_view` of ``normalize(text)``."""
    return classifier_view(normalize(text), text)


def repost_handle(text: str) -> str | None:
    """The @handle of the original when ``text`` is a text-style repost (``RT @user: ...``), else None.

    >>> repost_handle("RT @kabu_taro: 楽天証券で…"), repost_handle("楽天証券で RT希望")
    ('kabu_taro', None)
    """
    match = _RAW_RT.match(text)
    return match.group("handle") if match else None


def has_japanese(text: str) -> bool:
    """Whether a text holds kana or kanji (posts in other scripts are out of scope unless they name a broker).

    >>> has_japanese("楽天証券"), has_japanese("My SBI Securities account"), has_japanese("계좌가 해킹")
    (True, False, False)
    """
    return bool(_JAPANESE.search(text))
