"""tests/data/convert_recorded.py: each source's time convention and exact prices (small inputs
written in the sources' own formats)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("convert_recorded", ROOT / "tests/data/convert_recorded.py")
convert = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert)  # type: ignore[union-attr]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_lean_ms_since_midnight_et_and_prices_times_10000(tmp_path: Path) -> None:
    src = tmp_path / "20140609_trade.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("20140609_aapl_minute_trade.csv",
                    "14400000,6455700,6455700,922300,924200,600\n34200000,922300,922950,921001,922300,1000\n")
    out = tmp_path / "o.csv"
    assert convert.main(["lean", "--symbol", "AAPL", "--out", str(out), str(src)]) == 0
    assert lines(out) == [
        "symbol,timestamp,open,high,low,close,volume",
        "AAPL,2014-06-09T04:00:00-04:00,645.57,645.57,92.23,92.42,600",
        "AAPL,2014-06-09T09:30:00-04:00,92.23,92.295,92.1001,92.23,1000",
    ]


def test_ninjatrader_end_stamped_utc_becomes_start_in_new_york(tmp_path: Path) -> None:
    src = tmp_path / "nt.csv"
    src.write_text("20110103 143100;126.71;126.74;126.66;126.72;2259046\n"
                   "20110104 090100;126.9;126.9;126.9;126.9;100\n")
    out = tmp_path / "o.csv"
    convert.main(["ninjatrader", "--symbol", "SPY", "--dates", "2011-01-03", "--out", str(out), str(src)])
    assert lines(out)[1:] == ["SPY,2011-01-03T09:30:00-05:00,126.71,126.74,126.66,126.72,2259046"]


def test_fmp_json_numbers_stay_decimal_and_rows_sort_ascending(tmp_path: Path) -> None:
    src = tmp_path / "f.json"
    src.write_text(json.dumps([
        {"date": "2024-07-23 12:21:00", "open": 4.795, "low": 4.7913, "high": 4.89, "close": 4.83, "volume": 115230},
        {"date": "2024-07-23 04:06:00", "open": 1.47, "low": 1.46, "high": 1.47, "close": 1.46, "volume": 422},
    ]))
    out = tmp_path / "o.csv"
    convert.main(["fmp", "--symbol", "SLRX", "--out", str(out), str(src)])
    assert lines(out)[1:] == ["SLRX,2024-07-23T04:06:00-04:00,1.47,1.47,1.46,1.46,422",
                              "SLRX,2024-07-23T12:21:00-04:00,4.795,4.89,4.7913,4.83,115230"]


def test_pyqstrat_end_stamps_become_starts_and_float_prices_their_four_decimals(tmp_path: Path) -> None:
    """Rows as pyqstrat 1.0.2 ships them (AAPL.csv.gz, 2023-01-03): 129.45999 is 129.46,
    129.76819 the sub-penny print 129.7682, 135.67113 is 135.6711; 16:00:00 ends the 15:59 bar."""
    src = tmp_path / "AAPL.csv.gz"
    with gzip.open(src, "wt", newline="") as fh:
        fh.write("timestamp,o,h,l,c,v\n"
                 "2023-01-03 09:31:00,129.76819,129.87001,129.45999,129.65001,463769\n"
                 "2023-01-03 16:00:00,135.67113,135.755,135.57,135.62502,96149\n"
                 "2023-01-04 09:31:00,126.55,126.6,126.5,126.55,100\n")
    out = tmp_path / "o.csv"
    assert convert.main(["pyqstrat", "--symbol", "AAPL", "--dates", "2023-01-03", "--out", str(out), str(src)]) == 0
    assert lines(out) == [
        "symbol,timestamp,open,high,low,close,volume",
        "AAPL,2023-01-03T09:30:00-05:00,129.7682,129.87,129.46,129.65,463769",
        "AAPL,2023-01-03T15:59:00-05:00,135.6711,135.755,135.57,135.625,96149",
    ]


def test_pyqstrat_refuses_a_price_that_is_not_four_decimals_written_as_a_float() -> None:
    assert convert.four_decimals("99.99997") == "100"
    with pytest.raises(ValueError):
        convert.four_decimals("129.76815")
