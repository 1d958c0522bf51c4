"""benchmarks/bench.py --quick: it runs to the end, prints its table, loses no order and
leaves no process behind. Speed is not asserted: that is what the table is for."""

from __future__ import annotations

import re
import time

import psutil
import pytest
from conftest import Script, wait_until

SECTIONS = ("throughput", "ratio", "latency", "round-robin", "startup")
HEADER = ["section", "case", "C", "n", "result", "delivered", "target", "detail"]
POLL_S = 0.05  # how often to look for the benchmark's processes: a polling interval, not a synchronisation


def table_rows(bench: Script) -> list[list[str]]:
    """The table's rows, split into cells (cells are separated by two or more spaces)."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in bench.stdout]
    return [row for row in rows if row[0] in SECTIONS]


def descendants(pid: int) -> set[int]:
    """The live processes that `pid` started, directly or not (none once it is gone)."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def alive(pid: int) -> bool:
    """Whether `pid` still runs: an exited process that nobody has reaped yet (a zombie) does not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_watching_descendants(bench: Script, timeout: float) -> set[int]:
    """Wait for the benchmark to exit, meanwhile collecting the pids of every process it
    starts (its children, the fork server's children, run.py's): those seen alive."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while bench.proc.poll() is None and time.monotonic() < deadline:
        seen |= descendants(bench.pid)
        time.sleep(POLL_S)
    assert bench.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, bench.output
    return seen


@pytest.mark.timeout(60)
def test_quick_benchmark_prints_its_table_and_delivers_every_order(scripts) -> None:
    bench = scripts("benchmarks/bench.py", "--quick")
    started = run_watching_descendants(bench, timeout=55)
    assert any(re.split(r"\s{2,}", line.strip()) == HEADER for line in bench.stdout), bench.output
    rows = table_rows(bench)
    assert {row[0] for row in rows} == set(SECTIONS), bench.output

    # Throughput: full (no sink), full + sink, bare bytes, bare json, for C = 1 and 10.
    # Every one of them, and every round-robin run (the model rows run nothing), says how
    # many orders arrived out of how many were sent: all of them.
    throughput = [row for row in rows if row[0] == "throughput"]
    round_robin = [row for row in rows if row[0] == "round-robin" and not row[1].startswith("model")]
    assert len(throughput) == 8 and len(round_robin) == 4, bench.output
    assert sorted(row[2] for row in throughput if row[1].startswith("full: ")) == ["1", "10"], bench.output
    assert sorted(row[2] for row in throughput if row[1].startswith("full + ")) == ["1", "10"], bench.output
    for row in throughput + round_robin:
        delivered, sent = map(int, row[5].split("/"))
        assert delivered == sent > 0, row
    assert "every order delivered in all 12 throughput and round-robin cases" in bench.stdout, bench.output

    # The ratios full / bare bytes and full / bare json, for C = 1 and 10: numbers, met or not.
    ratios = [row for row in rows if row[0] == "ratio"]
    assert sorted((row[1], row[2]) for row in ratios) == [
        ("full / bare bytes", "1"),
        ("full / bare bytes", "10"),
        ("full / bare json", "1"),
        ("full / bare json", "10"),
    ], bench.output
    assert all(float(row[4]) > 0 for row in ratios), bench.output

    # The per-step costs under the table, one number per step.
    costs = " ".join(line for line in bench.stdout if line.startswith("per-step cost") or line.startswith("  "))
    for step in ("make_orders next()", "utc_now()", "json.dumps(order).encode()", "parse_order(bytes)"):
        assert re.search(re.escape(step) + r" \d+\.\d", costs), (step, bench.output)
    assert "Traceback" not in bench.output
    # A case that could not run says "failed: ..." in its row: none may.
    assert not [row for row in rows if any(cell.startswith("failed") for cell in row)], bench.output

    # Every process it started is gone: its children, and theirs (the fork server's,
    # run.py's). Not vacuous: each run of the round-robin rows alone starts 10 riders.
    assert len(started) >= 10, started
    wait_until(
        lambda: not any(alive(pid) for pid in started), timeout=5, what=f"its processes {sorted(started)} to exit"
    )
