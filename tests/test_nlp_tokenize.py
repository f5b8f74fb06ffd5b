"""Sudachi wrapper: split modes named at each call, normalized forms, offsets, chunking of long input."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlp.errors import TextError
from nlp.normalize import normalize
from nlp.tokenize import _MAX_CHUNK_BYTES, DICTIONARY_VERSION, Token, _chunks, get_tokenizer


def test_dictionary_version_names_package_and_version():
    assert re.fullmatch(r"sudachidict_core@\d{8}", DICTIONARY_VERSION)
    assert get_tokenizer().dictionary_version == DICTIONARY_VERSION


def test_tokenizer_is_created_once():
    assert get_tokenizer() is get_tokenizer()


@pytest.mark.parametrize(
    ("text", "mode", "surfaces"),
    [
        ("証券口座を乗っ取られた", "A", ["証券", "口座", "を", "乗っ", "取ら", "れ", "た"]),
        ("証券口座を乗っ取られた", "C", ["証券", "口座", "を", "乗っ取ら", "れ", "た"]),
        ("東京証券取引所で売られた", "A", ["東京", "証券", "取引", "所", "で", "売ら", "れ", "た"]),
        ("東京証券取引所で売られた", "C", ["東京証券取引所", "で", "売ら", "れ", "た"]),
        ("勝手に中国株を買われた", "B", ["勝手に", "中国", "株", "を", "買わ", "れ", "た"]),
    ],
)
def test_split_modes(text, mode, surfaces):
    assert [t.surface for t in get_tokenizer().tokens(text, mode)] == surfaces


def test_comparison_on_normalized_form():
    words = get_tokenizer().normalized_words
    # spelling variants meet on normalized_form()
    assert words("ログインできない", "C") == words("ログイン出来ない", "C")
    assert "売る" in words("売られた", "C")
    assert words(normalize("ﾛｸﾞｲﾝ").text, "A") == ["ログイン"]


def test_tokens_carry_offsets_and_pos():
    text = "SBIで中国株"
    tokens = get_tokenizer().tokens(text, "A")
    assert all(isinstance(t, Token) for t in tokens)
    assert [text[t.begin : t.end] for t in tokens] == [t.surface for t in tokens]
    assert tokens[0].pos[0] == "名詞"


def test_unknown_mode_and_bad_type():
    with pytest.raises(TextError):
        get_tokenizer().tokens("abc", "D")  # type: ignore[arg-type]
    with pytest.raises(TextError):
        get_tokenizer().tokens(None, "A")  # type: ignore[arg-type]


def test_text_over_sudachi_limit_is_chunked():
    text = ("楽天証券の口座に不正ログインされて株を売られた。" * 3000) + "終わり"
    assert len(text.encode()) > 49_149
    tokens = get_tokenizer().tokens(text, "B")
    assert [text[t.begin : t.end] for t in tokens[-3:]] == [t.surface for t in tokens[-3:]]
    assert "".join(t.surface for t in tokens) == text
    assert tokens[-1].end == len(text)


def test_chunks_respect_byte_budget_and_cover_text():
    text = "😭" * 10_000 + "あ。" * 9000 + "x" * 40_000
    pieces = _chunks(text)
    assert "".join(chunk for _, chunk in pieces) == text
    assert all(len(chunk.encode("utf-8")) <= _MAX_CHUNK_BYTES for _, chunk in pieces)
    assert [start for start, _ in pieces] == [sum(len(c) for _, c in pieces[:i]) for i in range(len(pieces))]


def test_cut_prefers_sentence_end():
    text = "あ" * 5000 + "。" + "い" * 5000
    first = _chunks(text)[0][1]
    assert first.endswith("。")


def test_threads_get_their_own_sudachi_tokenizer():
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(50):
                get_tokenizer().tokens("楽天証券で勝手に中国株を買われた", "C")
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever happened in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200) | st.sampled_from(["\ud800", "\x00\u202e", "😭" * 50, "&amp;"]))
def test_any_string_tokenizes(text):
    tokens = get_tokenizer().tokens(text, "C")
    assert all(0 <= t.begin <= t.end <= len(text) for t in tokens)
    get_tokenizer().tokens(normalize(text).text, "A")
