"""Securities master: the bundled CSV, and loaders for the official lists read IN PLACE from ../shared."""

from __future__ import annotations

import builtins
import csv
from pathlib import Path

import pytest

from nlp.errors import ModelLoadError
from nlp.securities import BUNDLED_MASTER, SecuritiesMaster, load_file, normalize_code

TICKERS = Path(__file__).resolve().parents[1] / ".." / "shared" / "real" / "tickers"
EDINET = TICKERS / "edinet_listed_companies_2026-04-10.csv"


def _real(name: str) -> Path:
    path = TICKERS / name
    if not path.is_file():
        pytest.skip(f"../shared not found: {path} (real ticker lists are read in place, never copied)")
    return path


@pytest.mark.parametrize(
    ("raw", "market", "expected"),
    [
        ("700", "HK", "0700.HK"),
        ("0700", "HK", "0700.HK"),
        ("00700", "HK", "0700.HK"),
        ("02269", "HK", "2269.HK"),
        ("7203", "T", "7203.T"),
        ("72030", "T", "7203.T"),  # 5-digit securities code with check digit
        ("1301.0", "T", "1301.T"),  # spreadsheet float
        ("285a", "T", "285A.T"),
        ("600519", "SS", "600519.SS"),
        ("000001", "SZ", "000001.SZ"),
        ("nvda", "US", "NVDA"),
        ("0", "HK", None),
        ("123456", "HK", None),
        ("72", "T", None),
        ("12345", "SS", None),
    ],
)
def test_normalize_code(raw, market, expected):
    assert normalize_code(raw, market) == expected


def test_bundled_master_rows_are_normalized_and_unique():
    with BUNDLED_MASTER.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    codes = [r["code"] for r in rows]
    assert len(codes) == len(set(codes)) >= 200
    master = SecuritiesMaster.bundled()
    assert len(master) == len(codes)
    assert {r["context"] for r in rows} <= {"trade", "stock"}


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("トヨタ", "7203.T"),
        ("ソニー", "6758.T"),
        ("任天堂", "7974.T"),
        ("テンセント", "0700.HK"),
        ("騰訊", "0700.HK"),
        ("アリババ", "9988.HK"),
        ("シャオミ", "1810.HK"),
        ("小米", "1810.HK"),
        ("BYD", "1211.HK"),
        ("美団", "3690.HK"),
        ("メイトゥアン", "3690.HK"),
        ("ｿﾌﾄﾊﾞﾝｸｸﾞﾙｰﾌﾟ", "9984.T"),
        ("ソフトバンク", "9434.T"),  # the exact name wins over a name stripped of グループ
        ("貴州茅台", "600519.SS"),
        ("テスラ", "TSLA"),
    ],
)
def test_bundled_names_resolve(name, code):
    assert SecuritiesMaster.bundled().resolve_name(name) == code


def test_unknown_name_and_code():
    master = SecuritiesMaster.bundled()
    assert master.resolve_name("八百屋") is None
    assert not master.is_listed("0000.T")


def test_bundled_japanese_codes_exist_in_the_edinet_list():
    real = SecuritiesMaster.load(_real(EDINET.name), bundled=False)
    bundled = SecuritiesMaster.bundled()
    japanese = [sec for sec in bundled.by_code.values() if sec.market == "T"]
    missing = [sec.code for sec in japanese if not real.is_listed(sec.code)]
    assert missing == []
    # the names agree too (EDINET spells them with 株式会社 and full-width letters)
    for sec in japanese:
        assert real.resolve_name(sec.name) == sec.code, sec


def test_bundled_hk_codes_agree_with_financedatabase():
    real = SecuritiesMaster.load(_real("financedatabase_HKG.csv"), bundled=False)
    assert len(real) > 1000
    bundled = SecuritiesMaster.bundled()
    checked = 0
    for sec in bundled.by_code.values():
        if sec.market == "HK" and real.is_listed(sec.code):
            english = real.by_code[sec.code].name.lower()
            latin = [a for a in sec.aliases if a.isascii()]
            if latin:
                assert any(a.split()[0].replace(".com", "") in english.replace("-", " ") for a in latin), (
                    sec,
                    english,
                )
                checked += 1
    assert checked >= 15


def test_edinet_real_file_loads_in_place():
    master = SecuritiesMaster.load(_real(EDINET.name))
    assert len(master) > 3800
    assert master.resolve_name("極洋") == "1301.T"
    assert master.resolve_name("KYOKUYO CO., LTD.") == "1301.T"
    assert master.is_listed("130A.T")
    assert master.by_code["1301.T"].source == "edinet"
    assert master.resolve_name("セーラー万年筆") == "7992.T"
    assert master.resolve_name("トヨタ") == "7203.T"  # bundled aliases still there


def test_edinet_original_shift_jis_layout(tmp_path):
    # The file as the FSA serves it: Shift_JIS, a date line first, Japanese headers, unlisted rows.
    content = (
        "ダウンロード実行日,2026年04月10日現在,件数,3件\n"
        "ＥＤＩＮＥＴコード,提出者種別,上場区分,連結の有無,資本金,決算日,提出者名,提出者名（英字）,提出者名（ヨミ）,"
        "所在地,提出者業種,証券コード,提出者法人番号\n"
        'E00012,内国法人・組合,上場,有,1,3月31日,株式会社　極洋,"KYOKUYO CO., LTD.",キョクヨウ,東京都,水産・農林業,13010,1\n'
        "E39268,内国法人・組合,上場,無,1,3月31日,株式会社Ｖｅｒｉｔａｓ,,ウェリタス,東京都,医薬品,130A0,2\n"
        "E99999,内国法人・組合,非上場,無,1,3月31日,株式会社非上場,,ヒジョウジョウ,東京都,サービス業,,3\n"
    )
    path = tmp_path / "EdinetcodeDlInfo.csv"
    path.write_bytes(content.encode("cp932"))
    rows = load_file(path)
    assert [(s.code, s.name) for s in rows] == [
        ("1301.T", "株式会社　極洋"),
        ("130A.T", "株式会社Ｖｅｒｉｔａｓ"),
    ]


@pytest.mark.parametrize(
    ("name", "code"), [("financedatabase_SHH.csv", "600519.SS"), ("financedatabase_SHZ.csv", "300750.SZ")]
)
def test_mainland_lists_load(name, code):
    master = SecuritiesMaster.load(_real(name), bundled=False)
    assert master.is_listed(code)
    assert all(c.endswith((".SS", ".SZ")) for c in master.by_code)


def test_easyquotation_codes_load():
    master = SecuritiesMaster.load(_real("easyquotation_stock_codes.json"), bundled=False)
    assert len(master) > 5000
    assert master.is_listed("600519.SS") and master.is_listed("000001.SZ") and master.is_listed("300750.SZ")
    assert not any(code.startswith(("SH", "SZ")) for code in master.by_code)


def test_delisted_rows_are_not_listed():
    master = SecuritiesMaster.load(_real("financedatabase_HKG.csv"), bundled=False)
    assert not master.is_listed("0011.HK")  # marked delisted in the file


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        SecuritiesMaster.load(tmp_path / "nope.csv")
    assert "not found" in str(info.value) and "\n" not in str(info.value)


def test_unknown_csv_header(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="unrecognised"):
        load_file(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ModelLoadError, match="unknown securities file type"):
        load_file(path)


def test_bad_json(tmp_path):
    path = tmp_path / "codes.json"
    path.write_text("[1, 2", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="easyquotation"):
        load_file(path)


def test_jpx_xls_without_xlrd_names_the_pip_command(tmp_path, monkeypatch):
    path = tmp_path / "data_j.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    real_import = builtins.__import__

    def no_xlrd(name, *args, **kwargs):
        if name == "xlrd":
            raise ImportError("No module named 'xlrd'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xlrd)
    with pytest.raises(ModelLoadError) as info:
        load_file(path)
    assert "pip install xlrd" in str(info.value)


def test_jpx_csv_copy_loads(tmp_path):
    path = tmp_path / "data_j.csv"
    path.write_text(
        "日付,コード,銘柄名,市場・商品区分\n20260331,1301,極洋,プライム（内国株式）\n20260331,130A,Veritas In Silico,グロース\n",
        encoding="utf-8",
    )
    assert [s.code for s in load_file(path)] == ["1301.T", "130A.T"]
