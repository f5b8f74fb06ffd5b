"""Securities master: which codes are listed, and which company names stand for which code.

Two kinds of source:

* the bundled master ``nlp/data/securities_master.csv``, written by this project from public facts: the
  companies most named in Japanese posts, Hong Kong and mainland companies under the katakana / kanji names
  Japanese writers use (テンセント, 小米), and small caps named during the 2025 account-hijacking wave. Its
  aliases are what :mod:`nlp.entities` scans posts for.
* official lists a user downloads, read in place by :meth:`SecuritiesMaster.load`: JPX ``data_j.xls``
  (needs ``xlrd``), the FSA EDINET code list CSV (Shift_JIS original or a UTF-8 copy), FinanceDatabase
  equity CSVs (``symbol,name,...``) and easyquotation's ``stock_codes`` JSON. These widen ``is_listed`` and
  ``resolve_name``; their names are not scanned for in posts (thousands of short generic names would
  match ordinary words).

Codes are kept normalized as in DESIGN.md: ``7203.T``, ``130A.T``, ``0700.HK``, ``600519.SS``,
``000001.SZ``, ``TSLA``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from nlp.errors import ModelLoadError
from nlp.normalize import normalize

__all__ = ["BUNDLED_MASTER", "Security", "SecuritiesMaster", "load_file", "normalize_code"]

BUNDLED_MASTER = Path(__file__).resolve().parent / "data" / "securities_master.csv"

_TSE = re.compile(r"[1-9][0-9A-Z][0-9][0-9A-Z]")
_LEGAL_FORM = re.compile(
    r"株式会社|\(株\)|有限会社|合同会社|"
    r",? ?(?:co\.,? ?ltd\.?|ltd\.?|limited|inc\.?|corporation|corp\.?|company|plc|class [a-z])(?![a-z])"
)
_GROUP_WORDS = re.compile(r"ホールディングス|グループ|(?<![a-z])(?:holdings?|group)(?![a-z])")


@dataclass(frozen=True)
class Security:
    """One listed security. ``context`` is how sure a name must be before it counts as this ticker:
    ``"trade"`` (a trade or stock word nearby is enough) or ``"stock"`` (a stock word is needed, for names
    that are also shops or services people buy from)."""

    code: str
    name: str
    aliases: tuple[str, ...] = ()
    market: str = ""
    context: str = "trade"
    source: str = "bundled"


def normalize_code(raw: str, market: str) -> str | None:
    """Normalize a raw code of ``market`` (``T``, ``HK``, ``SS``, ``SZ``, ``US``) as DESIGN.md says.

    >>> normalize_code("00700", "HK"), normalize_code("2269", "HK"), normalize_code("130a", "T")
    ('0700.HK', '2269.HK', '130A.T')
    >>> normalize_code("600519", "SS"), normalize_code("tsla", "US"), normalize_code("12", "T")
    ('600519.SS', 'TSLA', None)
    """
    code = raw.strip().upper()
    if market == "T":
        if code.endswith(".0"):  # spreadsheets hand numeric codes over as floats
            code = code[:-2]
        if len(code) == 5 and code.endswith("0"):  # 5-digit securities code with its check digit 0
            code = code[:4]
        return f"{code}.T" if _TSE.fullmatch(code) else None
    if market == "HK":
        if not code.isdigit() or not 1 <= len(code) <= 5 or int(code) == 0:
            return None
        return f"{int(code):04d}.HK"
    if market in ("SS", "SZ"):
        return f"{code}.{market}" if len(code) == 6 and code.isdigit() else None
    if market == "US":
        return code if re.fullmatch(r"[A-Z]{1,5}(?:\.[A-Z])?", code) else None
    return None


def _market_of(code: str) -> str:
    suffix = code.rsplit(".", 1)[1] if "." in code else ""
    return suffix if suffix in ("T", "HK", "SS", "SZ") else "US"


def name_keys(name: str) -> list[str]:
    """Keys under which a company name is looked up: normalized, then without company-form words.

    >>> name_keys("株式会社　極洋")
    ['株式会社 極洋', '極洋']
    >>> name_keys("ソフトバンクグループ株式会社")
    ['ソフトバンクグループ株式会社', 'ソフトバンクグループ', 'ソフトバンク']
    >>> name_keys("Tencent Holding Ltd.")
    ['tencent holding ltd.', 'tencent holding', 'tencent']
    """
    key = normalize(name).text
    keys = [key] if key else []
    for pattern in (_LEGAL_FORM, _GROUP_WORDS):
        bare = " ".join(pattern.sub("", keys[-1] if keys else "").split()).strip(" ,.")
        if len(bare) >= 2 and bare not in keys:
            keys.append(bare)
    return keys


class SecuritiesMaster:
    """Codes and names of listed securities.

    >>> master = SecuritiesMaster.bundled()
    >>> master.resolve_name("テンセント"), master.resolve_name("ＴＯＹＯＴＡ"), master.resolve_name("八百屋")
    ('0700.HK', '7203.T', None)
    >>> master.is_listed("0700.HK"), master.is_listed("0000.HK")
    (True, False)
    >>> master.by_code["285A.T"].name
    'キオクシアホールディングス'
    """

    def __init__(self, securities: Iterable[Security] = ()) -> None:
        self.by_code: dict[str, Security] = {}
        self._names: dict[str, str] = {}
        self.add(securities)

    def add(self, securities: Iterable[Security]) -> None:
        """Add securities; the first entry for a code or a name wins (the bundled master comes first)."""
        securities = list(securities)
        bare: list[tuple[str, str]] = []
        for sec in securities:
            if sec.code not in self.by_code:
                self.by_code[sec.code] = sec
            for name in (sec.name, *sec.aliases):
                keys = name_keys(name)
                for key in keys[:-1] if len(keys) == 3 else keys[:1]:
                    self._names.setdefault(key, sec.code)
                bare.extend((key, sec.code) for key in keys[1:])
        # Names as written (less their legal form) first, so "ソフトバンク" stays the carrier although
        # "ソフトバンクグループ" strips to it.
        for key, code in bare:
            self._names.setdefault(key, code)

    @classmethod
    def bundled(cls) -> SecuritiesMaster:
        """The master shipped with the package (cached; treat it as read-only)."""
        return _bundled_master()

    @classmethod
    def load(cls, *paths: str | Path, bundled: bool = True) -> SecuritiesMaster:
        """The bundled master (unless ``bundled=False``) widened by the official files at ``paths``."""
        master = cls(load_file(BUNDLED_MASTER) if bundled else ())
        for path in paths:
            master.add(load_file(path))
        return master

    def resolve_name(self, surface: str) -> str | None:
        """The code of the company called ``surface``, or None when the name is unknown."""
        for key in name_keys(surface):
            code = self._names.get(key)
            if code is not None:
                return code
        return None

    def is_listed(self, code: str) -> bool:
        """Whether the normalized ``code`` is in the master."""
        return code in self.by_code

    def bundled_names(self) -> dict[str, Security]:
        """Normalized name and aliases -> security, for the bundled entries only (what posts are scanned for)."""
        out: dict[str, Security] = {}
        for sec in self.by_code.values():
            if sec.source != "bundled":
                continue
            for name in (sec.name, *sec.aliases):
                key = normalize(name).text
                if len(key) >= 2:
                    out.setdefault(key, sec)
        return out

    def __len__(self) -> int:
        return len(self.by_code)

    def __contains__(self, code: object) -> bool:
        return code in self.by_code


@lru_cache(maxsize=1)
def _bundled_master() -> SecuritiesMaster:
    return SecuritiesMaster(load_file(BUNDLED_MASTER))


# --- loaders --------------------------------------------------------------------------------------------


def load_file(path: str | Path) -> list[Security]:
    """Read one securities file, recognising its kind by extension and header."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(
            f"{path}: securities file not found: check the path (JPX data_j.xls, EDINET code list CSV, ...)"
        )
    suffix = path.suffix.lower()
    if suffix in (".xls", ".xlsx"):
        return _load_jpx_xls(path)
    if suffix == ".json":
        return _load_easyquotation_json(path)
    if suffix != ".csv":
        raise ModelLoadError(
            f"{path}: unknown securities file type {suffix!r}: use JPX data_j.xls, an EDINET code list .csv, "
            "a FinanceDatabase .csv or easyquotation stock_codes .json"
        )
    text = _read_text(path)
    lines = text.splitlines()
    for index, line in enumerate(lines[:3]):
        header = [cell.strip().lstrip("\ufeff") for cell in next(csv.reader([line]), [])]
        rows = csv.DictReader(io.StringIO("\n".join(lines[index + 1 :])), fieldnames=header)
        if header[:3] == ["code", "name", "aliases"]:
            return _bundled_rows(path, rows)
        if "symbol" in header and "name" in header:
            return _financedatabase_rows(rows)
        if any("EDINET" in h.upper() or "ＥＤＩＮＥＴ" in h for h in header):
            return _edinet_rows(header, rows)
        if "コード" in header and "銘柄名" in header:
            return _jpx_rows(dict(r) for r in rows)
    raise ModelLoadError(
        f"{path}: unrecognised securities CSV header: expected the bundled master, an EDINET code list, "
        "a FinanceDatabase equities file or a JPX list with コード and 銘柄名 columns"
    )


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ModelLoadError(f"{path}: neither UTF-8 nor Shift_JIS: re-save the file as UTF-8")


def _split_aliases(cell: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in (cell or "").split("|") if a.strip())


def _bundled_rows(path: Path, rows: Iterable[dict[str, Any]]) -> list[Security]:
    out = []
    for line, row in enumerate(rows, start=2):
        code = (row.get("code") or "").strip()
        market = _market_of(code)
        raw = code.rsplit(".", 1)[0] if market != "US" else code
        if normalize_code(raw, market) != code:
            raise ModelLoadError(f"{path}:{line}: code {code!r} is not a normalized code: fix the row")
        context = (row.get("context") or "trade").strip() or "trade"
        out.append(
            Security(
                code, row["name"].strip(), _split_aliases(row.get("aliases")), market, context, "bundled"
            )
        )
    return out


def _financedatabase_rows(rows: Iterable[dict[str, Any]]) -> list[Security]:
    out = []
    for row in rows:
        symbol = (row.get("symbol") or "").strip().upper()
        if (row.get("delisted") or "").strip().lower() == "true" or "." not in symbol:
            continue
        raw, market = symbol.rsplit(".", 1)
        code = normalize_code(raw, market)
        if code:
            out.append(
                Security(code, (row.get("name") or "").strip(), (), market, "trade", "financedatabase")
            )
    return out


def _pick(header: list[str], *candidates: str) -> str | None:
    for candidate in candidates:
        for h in header:
            if h == candidate or h.replace(" ", "") == candidate.replace(" ", ""):
                return h
    return None


def _edinet_rows(header: list[str], rows: Iterable[dict[str, Any]]) -> list[Security]:
    code_col = _pick(header, "code")
    sec_col = _pick(header, "sec_code_5", "証券コード", "Securities Identification Code")
    name_col = _pick(header, "name_ja", "提出者名", "Submitter Name")
    en_col = _pick(header, "name_en", "提出者名（英字）", "Submitter Name（alphabetic）")
    listed_col = _pick(header, "上場区分", "Listed company / Unlisted company")
    out = []
    for row in rows:
        if listed_col and (row.get(listed_col) or "").strip() not in ("上場", "Listed company"):
            continue
        raw = (row.get(code_col) if code_col else None) or (row.get(sec_col) if sec_col else None) or ""
        code = normalize_code(raw, "T")
        if not code:
            continue
        name = (row.get(name_col) or "").strip() if name_col else ""
        english = (row.get(en_col) or "").strip() if en_col else ""
        out.append(
            Security(code, name or english, (english,) if english and name else (), "T", "trade", "edinet")
        )
    return out


def _jpx_rows(rows: Iterable[dict[str, Any]]) -> list[Security]:
    out = []
    for row in rows:
        code = normalize_code(str(row.get("コード") or ""), "T")
        if code:
            out.append(Security(code, str(row.get("銘柄名") or "").strip(), (), "T", "trade", "jpx"))
    return out


def _load_jpx_xls(path: Path) -> list[Security]:
    try:
        import xlrd
    except ImportError as exc:
        raise ModelLoadError(f"{path}: reading JPX data_j.xls needs xlrd: pip install xlrd") from exc
    try:
        sheet = xlrd.open_workbook(str(path)).sheet_by_index(0)
    except Exception as exc:  # xlrd raises several unrelated types for a broken workbook
        raise ModelLoadError(
            f"{path}: not a readable .xls workbook ({exc}): download data_j.xls again from JPX"
        ) from exc
    header = [str(v).strip() for v in sheet.row_values(0)]
    if "コード" not in header or "銘柄名" not in header:
        raise ModelLoadError(f"{path}: no コード / 銘柄名 columns in the first row: is this JPX data_j.xls?")
    return _jpx_rows(dict(zip(header, sheet.row_values(i), strict=False)) for i in range(1, sheet.nrows))


def _load_easyquotation_json(path: Path) -> list[Security]:
    try:
        codes = json.loads(_read_text(path))["stock"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f'{path}: expected easyquotation\'s stock_codes JSON ({{"stock": [...]}}): {exc}'
        ) from exc
    out = []
    for raw in codes:
        raw = str(raw).lower()
        if raw[:2] in ("sh", "sz"):
            continue  # prefixed entries are indices, not shares
        market = "SS" if raw[:2] in ("60", "68") else "SZ" if raw[:2] in ("00", "30") else None
        code = normalize_code(raw, market) if market else None
        if code and market:
            out.append(Security(code, "", (), market, "trade", "easyquotation"))
    return out
