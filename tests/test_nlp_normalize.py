"""normalize(): folding rules, the span map back to the original, and robustness on any string."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nlp
from nlp.errors import TextError
from nlp.normalize import MAX_CHARS, Normalized, normalize


def test_nlp_package_is_ours():
    assert nlp.__file__.endswith("nlp/__init__.py")
    assert "site-packages" not in nlp.__file__


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＳＢＩ証券", "sbi証券"),  # full-width ASCII folds, Latin lower-cased
        ("ﾗｸﾃﾝｼｮｳｹﾝ", "ラクテンショウケン"),  # half-width katakana widens
        ("ｶﾞｯﾂﾎﾟｰｽﾞ", "ガッツポーズ"),  # with the half-width sound marks joined
        ("７２０３（トヨタ）", "7203(トヨタ)"),
        ("買われた！！！？？", "買われた!?"),
        ("最悪ｗｗｗｗ", "最悪w"),
        ("えーーーー", "えー"),
        ("a \t\u3000 b", "a b"),
        ("一行目\r\n\n  二行目\u2028三", "一行目\n二行目\n三"),
        ("①保有株を売って②", "①保有株を売って②"),
        ("  両端  ", "両端"),
        ("#楽天証券 乗っ取り", "楽天証券 乗っ取り"),
        ("@rakuten_taro ひどい", "@user ひどい"),
        ("mail: a@example.com", "mail: a@example.com"),  # an address is not a mention
        ("詳細 https://www.rakuten-sec.co.jp/web/info/?id=1 です", "詳細 <url:rakuten-sec.co.jp> です"),
        ("ｈｔｔｐｓ：／／ｔ．ｃｏ／ａｂｃ", "<url:t.co>"),
        ("&amp; &lt;b&gt; &#x6e2f; &#28207; &nbsp;x", "& <b> 港 港 x"),
        ("&bogus; &#xD800; &#99999999;", "&bogus; \ufffd \ufffd"),
        ("口座\u200b乗っ取り\u202e\ufeff", "口座乗っ取り"),  # zero-width and bidi characters go
        ("😭😭😭", ""),
        ("被害😡です🙏🏻", "被害 です"),
        ("\ud800口座\udfff", "\ufffd口座\ufffd"),
        ("\x00\x07ctrl\x1b", "ctrl"),
        ("㈱", "(株)"),
        ("", ""),
    ],
)
def test_normalize_table(text, expected):
    assert normalize(text).text == expected


def test_offsets_map_every_character_back():
    original = "楽天ｼｮｳｹﾝで&amp;ＳＢＩが😭 https://t.co/x ７２０３"
    n = normalize(original)
    assert n.text == "楽天ショウケンで&sbiが <url:t.co> 7203"
    start = n.text.index("ショウケン")
    assert original[slice(*n.span_to_original(start, start + 5))] == "ｼｮｳｹﾝ"
    start = n.text.index("&")
    assert original[slice(*n.span_to_original(start, start + 1))] == "&amp;"
    start = n.text.index("sbi")
    assert original[slice(*n.span_to_original(start, start + 3))] == "ＳＢＩ"
    start = n.text.index("<url")
    assert original[slice(*n.span_to_original(start, start + len("<url:t.co>")))] == "https://t.co/x"
    start = n.text.index("7203")
    assert original[slice(*n.span_to_original(start, start + 4))] == "７２０３"


def test_collapsed_run_maps_to_the_whole_run():
    original = "え！！！！"
    n = normalize(original)
    assert n.text == "え!"
    assert n.span_to_original(1, 2) == (1, 5)


def test_empty_span_and_bad_span():
    n = normalize("abc")
    assert n.span_to_original(3, 3) == (3, 3)
    assert n.span_to_original(1, 1) == (1, 1)
    with pytest.raises(ValueError):
        n.span_to_original(2, 5)


def test_long_text_is_cut_deliberately():
    n = normalize("株" * (MAX_CHARS * 200))
    assert n.truncated
    assert len(n.text) == MAX_CHARS
    assert not normalize("株" * 10).truncated


def test_not_a_string_is_one_clear_error():
    with pytest.raises(TextError) as info:
        normalize(b"bytes")  # type: ignore[arg-type]
    assert "decode" in str(info.value)
    assert "\n" not in str(info.value)


def _check_invariants(text: str, n: Normalized) -> None:
    assert isinstance(n.text, str)
    assert len(n.offsets) == len(n.text) == len(n.ends)
    assert list(n.offsets) == sorted(n.offsets)
    for i in range(len(n.text)):
        assert 0 <= n.offsets[i] < n.ends[i] <= min(len(text), MAX_CHARS)
    if n.text:
        begin, end = n.span_to_original(0, len(n.text))
        assert 0 <= begin <= end <= len(text)
    # normalized text is valid Unicode: it can be encoded and stored
    n.text.encode("utf-8")
    assert "  " not in n.text and "\n\n" not in n.text


_AWKWARD = st.sampled_from(
    [
        "\ud800",
        "\udfff",
        "\x00",
        "\x1b",
        "\u202e",
        "\u200f",
        "\u2066",
        "\ufeff",
        "\u200d",
        "😭",
        "🙏🏻",
        "👨‍👩‍👧",
        "&amp;",
        "&#x6e2f;",
        "&#0;",
        "&#xD800;",
        "&",
        "#",
        "@",
        "https://",
        "ﾞ",
        "\u3099",
        "ｶ",
        "\ufffe",
        "\U0010ffff",
        "\r\n",
        "ｗ",
        "！",
        "７",
        "Ａ",
        "İ",
        "ﬁ",
        "㌔",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=20), _AWKWARD), max_size=30).map("".join))
def test_any_string_normalizes(text):
    _check_invariants(text, normalize(text))


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), min_size=0, max_size=2000))
def test_any_code_points_normalize(text):
    _check_invariants(text, normalize(text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "😭" * 1000,
        "&#x6e2f;" * 100_000,
        "\ud800" * 300_000,
        "a" * 1_000_000,
        "ｗ" * 1_000_000,
        "https://" + "a" * 1_000_000,
        "\u202e\u200b" * 500_000,
    ],
    ids=["empty", "emoji-only", "entities-800k", "surrogates", "1MB", "laughter-1MB", "url-1MB", "bidi-1MB"],
)
def test_huge_and_hostile_input(text):
    n = normalize(text)
    _check_invariants(text, n)
    assert len(n.text) <= MAX_CHARS
