"""The benchmark command runs end to end and prints a complete table (a tiny fleet, a few seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prints_a_complete_row_for_a_small_fleet():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--instances", "20", "--interval", "1",
                             "--window", "2", "--scrape-window", "2", "--concurrency", "4"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    header, rule, row = lines
    columns = [cell.strip() for cell in row.strip("|").split("|")]
    assert len(columns) == len(header.strip("|").split("|")) == 14
    assert columns[0] == "20" and columns[1] == "1 s" and columns[2] == "4"
    fetched, demanded = (int(n.replace(",", "")) for n in columns[6].split(" (")[0].split(" / "))
    assert fetched > 0 and demanded > 0
    assert all(cell and "nan" not in cell for cell in columns), row
