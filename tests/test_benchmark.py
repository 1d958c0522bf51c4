"""benchmarks/bench.py --quick: it runs to the end, prints its table, loses no order and
leaves no process behind. Speed is not asserted: that is what the table is for."""

from __future__ import annotations

import re
import time

import psutil
import pytest
from conftest import Script, wait_until

pytestmark = pytest.mark.benchmark  # CI's own step: python -m pytest -m benchmark

SECTIONS = ("throughput", "ratio", "latency", "round-robin", "startup", "same-work", "growth", "riders")
HEADER = ["section", "case", "C", "n", "result", "delivered", "target", "detail"]
POLL_S = 0.05  # how often to look for the benchmark's processes: a polling interval, not a synchronisation


def table_rows(bench: Script) -> list[list[str]]:
    """The table's rows, split into cells (cells are separated by two or more spaces)."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in bench.stdout]
    return [row for row in rows if row[0] in SECTIONS]


def descendants(pid: int) -> list[psutil.Process]:
    """The live processes that `pid` started, directly or not (none once it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def alive(pid: int) -> bool:
    """Whether `pid` still runs: an exited process that nobody has reaped yet (a zombie) does not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_watching_descendants(bench: Script, timeout: float) -> dict[int, str]:
    """Wait for the benchmark to exit, meanwhile collecting the pids of every process it
    starts (its children, the fork server's children, run.py's, the scripts that the
    same-work section runs), with their command lines: those seen alive."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while bench.proc.poll() is None and time.monotonic() < deadline:
        for process in descendants(bench.pid):
            # The latest each time: between fork and exec a process shows its parent's.
            seen[process.pid] = command_line(process) or seen.get(process.pid, "")
        time.sleep(POLL_S)
    assert bench.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, bench.output
    return seen


# The quick run in two halves, which pytest-xdist runs side by side: the functions'
# sections (produce() and consume() in processes of their own, next to bare pyzmq), and
# the scripts' (hardened.run, hardened.producer, hardened.consumer as a user runs them). Each half: its
# --only options, the sections of its table rows, the cases that count orders.
HALVES = {
    "functions": (("throughput", "latency", "roundrobin"), {"throughput", "ratio", "latency", "round-robin"}, 12),
    "scripts": (("startup", "samework", "growth", "riders"), {"startup", "same-work", "growth", "riders"}, 5),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("half", list(HALVES))
def test_quick_benchmark_prints_its_table_and_delivers_every_order(scripts, half: str) -> None:
    only, sections, counted = HALVES[half]
    bench = scripts("benchmarks/bench.py", "--quick", *(f"--only={name}" for name in only))
    started = run_watching_descendants(bench, timeout=55)
    assert any(re.split(r"\s{2,}", line.strip()) == HEADER for line in bench.stdout), bench.output
    rows = table_rows(bench)
    assert {row[0] for row in rows} == sections, bench.output
    # The line under the table counts the cases that must lose nothing: 8 throughput and
    # 4 round robin; or 3 same work, 1 growth, 1 riders.
    assert f"every order delivered in all {counted} cases that count them" in bench.stdout, bench.output
    assert "Traceback" not in bench.output
    # A case that could not run says "failed: ..." in its row: none may.
    assert not [row for row in rows if any(cell.startswith("failed") for cell in row)], bench.output
    if half == "functions":
        check_functions(bench, rows, started)
    else:
        check_scripts(bench, rows, started)
    wait_until(
        lambda: not any(alive(pid) for pid in started), timeout=5, what=f"its processes {sorted(started)} to exit"
    )


def check_functions(bench: Script, rows: list[list[str]], started: dict[int, str]) -> None:
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

    # The ratios full / bare bytes and full / bare json, for C = 1 and 10: numbers, met or not.
    ratios = [row for row in rows if row[0] == "ratio"]
    assert sorted((row[1], row[2]) for row in ratios) == [
        ("full / bare bytes", "1"),
        ("full / bare bytes", "10"),
        ("full / bare json", "1"),
        ("full / bare json", "10"),
    ], bench.output
    assert all(float(row[4]) > 0 for row in ratios), bench.output
    # The processes it started (all gone by the end of the test): a run of the
    # round-robin rows alone starts 10 riders.
    assert len(started) >= 10, started

    # The per-step costs under the table, one number per step.
    costs = " ".join(line for line in bench.stdout if line.startswith("per-step cost") or line.startswith("  "))
    for step in ("make_orders next()", "utc_now()", "json.dumps(order).encode()", "parse_order(bytes)"):
        assert re.search(re.escape(step) + r" \d+\.\d", costs), (step, bench.output)


def check_scripts(bench: Script, rows: list[list[str]], started: dict[int, str]) -> None:
    # Same work, three sides: the first read's scripts, the hardened ones, bare pyzmq;
    # every order delivered to the sink on each side; then the two ratios, each against
    # its target, met or not.
    same_work = [row for row in rows if row[0] == "same-work"]
    sides = [row for row in same_work if not row[1].startswith("ratio")]
    assert [row[1].split(":")[0] for row in sides] == ["first read", "hardened", "bare pyzmq"], bench.output
    for row in sides:
        delivered, sent = map(int, row[5].split("/"))
        assert delivered == sent == int(row[3]) > 0 and row[4].endswith(" /s"), row
    same_ratios = [row for row in same_work if row[1].startswith("ratio ")]
    assert [row[1] for row in same_ratios] == ["ratio hardened / first read", "ratio first read / bare pyzmq"]
    assert all(float(row[4]) > 0 for row in same_ratios), bench.output
    assert [re.sub(r" (NOT )?MET$", "", row[6]) for row in same_ratios] == [">= 0.90", ">= 0.95"], bench.output

    # Memory as the orders grow (--quick: 2,000) and run.py with 10 riders: every run
    # delivered every order exactly once, and measured something.
    growth = [row for row in rows if row[0] == "growth"]
    assert [row[3] for row in growth] == ["2000"], bench.output
    riders = [row for row in rows if row[0] == "riders"]
    assert [row[2] for row in riders] == ["10"], bench.output
    for row, unit in [(row, "MB") for row in growth] + [(row, "s") for row in riders]:
        delivered, sent = map(int, row[5].split("/"))
        assert delivered == sent == int(row[3]) > 0, row
        assert re.fullmatch(rf"-?\d+\.\d+ {unit}", row[4]) and "exactly once: yes" in row[7], row

    # The processes it started (all gone by the end of the test): run.py's, and the
    # scripts of the same-work section, each side's, 11 a side.
    assert len(started) >= 33, started
    scripts = {
        "first read": (r"[/\\]producer\.py\b", r"[/\\]consumer\.py\b"),
        "hardened": (r"-m hardened\.producer\b", r"-m hardened\.consumer\b", r"-m hardened\.run\b"),
        "bare": (r"bare_pipeline\.py producer\b", r"bare_pipeline\.py consumer\b"),
    }
    for side, patterns in scripts.items():
        for pattern in patterns:
            assert any(re.search(pattern, cmdline) for cmdline in started.values()), (side, pattern, started)
