"""The benchmark command runs end to end and prints a complete table (a tiny fleet, a few seconds)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.tools import require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prints_a_complete_row_for_a_small_fleet_and_writes_the_sizing_page(tmp_path):
    page = tmp_path / "performance.md"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--instances", "20", "--interval", "1",
                             "--window", "2", "--scrape-window", "2", "--versus", "4", "--beside", "3",
                             "--concurrency", "4",
                             "--collectors", "sessions,all@20,again", "--markdown", str(page)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    header, rule, *rows = lines
    assert len(rows) == 3
    for row, collectors in zip(rows, ("sessions", "all", "again")):
        columns = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(columns) == len(header.strip("|").split("|")) == 18
        assert columns[:4] == ["20", "1 s", collectors, "4"]
        # against the session poll alone, side by side: only with other collectors on, or the
        # session poll again (the comparison's own spread)
        assert (columns[7] == "-") == (collectors == "sessions") and columns[7] != "nanx"
        fetched, demanded = (int(n.replace(",", "")) for n in columns[8].split(" (")[0].split(" / "))
        assert fetched > 0 and demanded > 0
        assert all(cell and "nan" not in cell for cell in columns), row
    text = page.read_text()
    assert text.startswith("# Performance and sizing") and rows[0] in text and "## Sizing" in text
    # The bare loop's pages against those its window (--beside, longer than --window) demanded.
    bare = re.findall(r"the bare loop \(beside the exporter\) fetched ([\d,]+) / ([\d,]+) pages", text)
    assert len(bare) == 3
    for fetched, demanded in bare:
        assert 0.5 <= int(fetched.replace(",", "")) / int(demanded.replace(",", "")) <= 1.3, bare


def test_a_configuration_runs_at_every_size_or_at_those_after_its_at_sign(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_module", ROOT / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    assert bench.planned_rows([1000, 20000], "sessions,top@1000,all@1000+20000") == [
        (1000, "sessions"), (1000, "top"), (1000, "all"), (20000, "sessions"), (20000, "all")]
    for wrong, problem in (("nope", "unknown 'nope'"), ("top@1k", "numbers joined by +"),
                           ("top@5", "none of its sizes")):
        with pytest.raises(ValueError, match=problem):
            bench.planned_rows([1000], wrong)
    refused = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--collectors", "top@5"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert refused.returncode == 2 and "none of its sizes is among --instances" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_instructions_compares_each_configuration_with_the_session_poll_alone():
    """Counted in instructions, and with `--simulate branches` the simulated branch predictor's
    counts too, per call of each exporter and against the session poll alone; with `--bare`, the
    bare loop's per page, and where the session poll's exceed it."""
    require("valgrind", "Debian package valgrind")  # skips a developer's run without it, fails CI
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "instructions.py"), "--instances", "5",
                             "--interval", "2", "--window", "18", "--collectors", "top", "--simulate", "branches", "--bare"],
                            capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    instructions, simulated = result.stdout.split("Simulated branches")
    simulated, excess = simulated.split("Where the session poll's instructions")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in instructions.splitlines()
            if line.startswith(("| sessions", "| top", "| bare loop"))]
    assert [row[0] for row in rows] == ["sessions", "top", "bare loop"]
    calls = [int(row[1].replace(",", "")) for row in rows]
    per_call = [int(row[2].replace(",", "")) for row in rows]
    assert min(calls) > 0 and min(per_call) > 100_000, rows
    assert rows[0][3] == "1.000x"
    # Top sessions do work of their own on every page: never free, never a multiple of the poll.
    assert 1.0 < float(rows[1][3].rstrip("x")) < 1.5, rows
    # The bare loop fetches and parses the same pages, and does nothing else with them.
    assert 0.2 < float(rows[2][3].rstrip("x")) < 1.0, rows

    lines = simulated.splitlines()
    header = next(line for line in lines if line.startswith("| collectors"))
    assert [cell.strip() for cell in header.strip("|").split("|")][1:] == [
        "conditional branches", "conditional mispredicted", "indirect branches", "indirect mispredicted"]
    branches = {cells[0]: cells[1:] for cells in ([cell.strip() for cell in line.strip("|").split("|")]
                                                  for line in lines if line.startswith(("| sessions", "| top")))}
    assert all(cell.endswith("(1.000x)") for cell in branches["sessions"]), branches
    for cell in branches["top"]:
        count, ratio = re.fullmatch(r"([\d,]+) \((\d+\.\d+)x\)", cell).groups()  # type: ignore[union-attr]
        assert int(count.replace(",", "")) > 0 and 1.0 < float(ratio) < 1.5, branches

    # By library: the bare loop decodes with orjson, the exporter with msgspec, both in the interpreter.
    tables = [[[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in table.splitlines()
               if line.startswith("| ") and not line.startswith("| program") and not line.startswith("| function")]
              for table in excess.split("\n\n")[1:]]
    libraries, functions = ({row[0]: row[1:] for row in table} for table in tables)
    orjson = [row for name, row in libraries.items() if name.startswith("orjson")]
    assert orjson and orjson[0][0] == "0" and int(orjson[0][1].replace(",", "")) > 0, libraries
    assert any(name.startswith("libpython") or name.startswith("python") for name in libraries), libraries
    assert len(functions) == 15 and all(row[2].startswith("+") for row in functions.values()), functions
