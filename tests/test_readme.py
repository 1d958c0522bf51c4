"""The sample outputs of README.md and docs/*.md, checked against real runs, so that the
documentation cannot drift; and every link in them to a local file or heading resolves.

Every ```text block in README.md and in docs/*.md has a marker on the line before its fence, invisible on
GitHub: <!-- sample: ID -->, each ID once across all the files. For each ID a test here
runs what the page says produces it,
only faster (--speed, --interval, port 0 instead of 5557; the same seeds, so the same
orders), and compares by shape:

- both sides are normalised (shape()): a terminal's ^C dropped, every run of digits made N
  (ports, ids, times), a bar of # made one #, whitespace collapsed, and a word repeated
  in a row kept once (a list of order ids as long as the timing made it);
- the README's cuts (`...`) and blank lines are skipped;
- every other README line must appear in the real output, in the README's order (a
  subsequence), on its own stream: stderr for the lines the scripts write there
  (STDERR), stdout for the rest; and in the output of the process it names, where a
  block shows several.

The benchmark table is the one block not run here (a minute of timings): its rows'
labels are checked against the labels that bench.py's own code makes, its measurements
replaced by instant fakes.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import zmq
import zmq.auth
from conftest import (
    LOOPBACK_ANY_PORT,
    ROOT,
    Script,
    Scripts,
    bound_endpoint,
    make_certificates,
    posix_signals,
    wait_until,
)

from hardened.orders import make_orders, utc_now

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- sample: ([a-z0-9-]+) -->")

# Which test checks each sample, and how: every marked block must be here, and every
# entry here must be a block (test_every_sample_is_marked_and_checked).
SAMPLES = {
    "first-run": "python run.py (the first read)",
    "first-terminals-producer": "python producer.py --seed 1, then consumer.py rider-1 and rider-2, Ctrl-C",
    "first-terminals-rider-1": "the same run: rider-1's terminal",
    "first-terminals-rider-2": "the same run: rider-2's terminal",
    "run-default": "python -m hardened.run",
    "run-two-producers": "python -m hardened.run --producers 2 --orders 30",
    "terminals-producer": "python -m hardened.producer --seed 1, then riders 1 and 2, Ctrl-C",
    "terminals-rider-1": "the same run: rider-1's terminal",
    "terminals-rider-2": "the same run: rider-2's terminal",
    "bind-warning": "python -m hardened.producer --bind 'tcp://*:5557'",
    "rejected": "a rider sent an order without delivery_s, then a message of 2 frames",
    "oversized": "a rider sent a message over 64 KiB",
    "curve-producer": "the CURVE walkthrough: the producer, rider-3 (unknown key), rider-9 (no CURVE), riders 1, 2",
    "curve-rider-3": "the same run: rider-3's terminal",
    "curve-rider-9": "the same run: rider-9's terminal",
    "silent-waits": "a rider with no producer on its port, a producer with no rider",
    "heartbeats": "a rider that vanished, then came back (checked in test_faults: a frozen rider)",
    "crash": "python -m hardened.run --crash-consumer",
    "benchmark": "not run (a minute of timings): its rows' labels are checked against bench.py's code",
}

# The lines the scripts write to stderr (cli.error); every other line is on stdout.
STDERR = re.compile(r": (rejected message|refused|warning|cannot|gave up)\b| refused us: ")

# Lines the scripts print in one of two forms, depending on timing: how a rider without
# CURVE and a CURVE producer learn of the failed handshake varies from run to run, on
# each side (tests/test_security.py).
EITHER = [
    (
        "refused us: closed during the handshake (not a ZeroMQ peer, or the other side wants CURVE?)",
        "refused us: security mismatch: CURVE on one side only",
    ),
    (
        "refused a connection: security mismatch: CURVE on one side only",
        "refused a connection: handshake failed (the wrong server key, or CURVE on one side only?)",
    ),
]


def shape(line: str) -> str:
    """What is compared: the words, not the numbers, the bars' lengths or the spacing."""
    line = line.removeprefix("^C")  # how a terminal shows the Ctrl-C that ended the script
    line = re.sub(r"#+", "#", re.sub(r"\d+", "N", line))
    words = line.split()
    return " ".join(word for i, word in enumerate(words) if i == 0 or word != words[i - 1])


def same(readme: str, real: str) -> bool:
    forms = [(a, b) for pair in EITHER for a, b in (pair, pair[::-1])]
    return readme == real or any(readme.replace(a, b) == real for a, b in forms if a in readme)


def samples() -> tuple[dict[str, list[str]], list[str]]:
    """The marked ```text blocks of README.md and docs/*.md by id, and where the unmarked
    ones are (file:line)."""
    marked: dict[str, list[str]] = {}
    unmarked = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if line.strip() != "```text":
                continue
            body = lines[number + 1 : lines.index("```", number + 1)]
            if number and (marker := MARKER.fullmatch(lines[number - 1].strip())):
                assert marker.group(1) not in marked, f"two samples marked {marker.group(1)!r} ({page.name})"
                marked[marker.group(1)] = body
            else:
                unmarked.append(f"{page.relative_to(ROOT)}:{number + 1}")
    return marked, unmarked


def sample(sample_id: str) -> list[str]:
    return samples()[0][sample_id]


def mismatches(sample_id: str, default: Script, by_name: dict[str, Script] | None = None) -> list[str]:
    """How the README's sample differs from the real output (nothing: it matches). A line
    naming a process in by_name (p1: ..., rider-1 ...) is looked for in that one's output."""
    found: dict[tuple[int, str], int] = {}  # (script, stream) -> where the last match was
    problems = []
    for line in sample(sample_id):
        if line.strip() in ("", "..."):
            continue
        name = re.match(r"\S*?(?=[: ]|$)", line.removeprefix("^C"))
        script = (by_name or {}).get(name.group() if name else "", default)
        stream = "stderr" if STDERR.search(line) else "stdout"
        real = script.stderr if stream == "stderr" else script.stdout
        start = found.get((id(script), stream), 0)
        want = shape(line)
        at = next((i for i in range(start, len(real)) if same(want, shape(real[i]))), None)
        if at is None:
            after = f" after line {start} ({real[start - 1]!r})" if start else ""
            problems.append(f"{sample_id}: {line!r} not on {stream} of {described(script)}{after}")
            continue
        found[id(script), stream] = at + 1
    if problems:
        problems.append(f"  shape wanted: {[shape(line) for line in sample(sample_id)]}")
        for script in (default, *(by_name or {}).values()):
            problems.append(f"  {described(script)} printed: {script.stdout} {script.stderr}")
    return problems


def described(script: Script) -> str:
    """Its command line, without the code of a gated start (GATED)."""
    return " ".join(script.args[3:] if script.args[0] == "-c" else script.args)


def check(*results: list[str]) -> None:
    problems = [problem for result in results for problem in result]
    assert not problems, "\n".join(problems)


# --- the README itself ---


def test_every_sample_is_marked_and_checked() -> None:
    marked, unmarked = samples()
    assert not unmarked, f"{unmarked}: a ```text block without <!-- sample: ID --> before it"
    assert sorted(marked) == sorted(SAMPLES), "a sample in the docs that no test checks, or a check without a sample"
    for sample_id, lines in marked.items():
        assert any(line.strip() not in ("", "...") for line in lines), f"{sample_id}: an empty sample"


def test_shape_keeps_the_words_and_drops_the_numbers() -> None:
    assert shape("rider-10        5    4.01  ######  (killed)") == "rider-N N N.N # (killed)"
    assert shape("^Cp1: stopped, sent 9 orders") == "pN: stopped, sent N orders"
    assert shape("lost with rider-1 (2): p1-000031 p1-000041") == shape("lost with rider-1 (1): p1-000012")
    assert shape("p1: sent 1 order") != shape("p1: sent 2 orders")
    assert shape("rider-1 delivered p1-000001 (Sushi Go)") != shape("rider-1 delivered p1-000001 (Taco Loco)")


# --- the links between the pages ---

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces made -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def outside_code(page: Path) -> list[str]:
    """A page's lines, without those in fenced code blocks."""
    lines, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    for line in outside_code(page):
        if heading := re.fullmatch(r"#{1,6} (.+)", line):
            anchor = slug(heading.group(1))
            seen[anchor] = seen.get(anchor, -1) + 1  # the second of a name gets -1, as on GitHub
    return {f"{anchor}-{n}" if n else anchor for anchor, count in seen.items() for n in range(count + 1)}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_local_link_resolves(page: Path) -> None:
    """Every markdown link (and image) to a local file or a heading leads somewhere."""
    broken = []
    links = [target for line in outside_code(page) for target in LINK.findall(line)]
    for target in links:
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: no heading #{anchor} in {where.name}")
    assert not broken, f"{page.name}: {broken}"


# --- the samples that need no signal: run.py, and what a rider or a producer says alone ---


def bad_messages(rider: Script, push: zmq.Socket) -> None:
    """What the README's rejected and oversized samples show: an order without delivery_s,
    a message of 2 frames, and a message over the rider's 64 KiB limit."""
    order = next(make_orders("p1", 1, (0.2, 1.0))) | {"created_at": utc_now()}
    del order["delivery_s"]
    push.send(json.dumps(order).encode())
    rider.wait_for_line("rejected message: 'delivery_s'", stream="stderr")
    push.send_multipart([b"{}", b"{}"])
    rider.wait_for_line("rejected message: 2 frames", stream="stderr")
    push.send(b"x" * 100_000)
    rider.wait_for_line("rejected message: over the", stream="stderr")


def test_the_samples_of_run_py_and_of_lone_scripts(scripts: Scripts, ctx: zmq.Context, unused_endpoint: str) -> None:
    # All at once, to share the 3 s that the silent waits take. run.py as the README runs
    # it, faster; the crash demo with rides of equal length, so that rider-1 has always
    # delivered one order or two when it is killed, as in the README (with rides of
    # random length it may have delivered none, and its row then has no bar).
    first = scripts("run.py", "--speed", "0.3")
    default = scripts("-m", "hardened.run", "--speed", "0.3")
    two = scripts("-m", "hardened.run", "--producers", "2", "--orders", "30", "--speed", "0.1")
    crash = scripts("-m", "hardened.run", "--crash-consumer", "--speed", "0.3", "--delivery", "1-1")
    lonely_rider = scripts("-m", "hardened.consumer", "--name", "rider-1", "--connect", unused_endpoint)
    lonely_producer = scripts("-m", "hardened.producer", "--bind", LOOPBACK_ANY_PORT)
    exposed = scripts("-m", "hardened.producer", "--bind", "tcp://*:0")
    push = ctx.socket(zmq.PUSH)
    push.bind(LOOPBACK_ANY_PORT)
    rider = scripts("-m", "hardened.consumer", "--name", "rider-1", "--connect", push.last_endpoint.decode())
    bad_messages(rider, push)
    exposed.wait_for_line("warning: ", stream="stderr")
    lonely_rider.wait_for_line("no producer at ")
    lonely_producer.wait_for_line("no consumer after ")
    for run in (first, default, two, crash):
        assert run.wait(timeout=30) == 0, run.output
    check(
        mismatches("first-run", first),
        mismatches("run-default", default),
        mismatches("run-two-producers", two),
        mismatches("crash", crash),
        mismatches("rejected", rider),
        mismatches("oversized", rider),
        mismatches("bind-warning", exposed),
        mismatches("silent-waits", lonely_rider, {"p1": lonely_producer}),
    )


# --- the terminal sessions: a producer and riders started in turn, and Ctrl-C at the end ---

# A rider that starts only when a file appears, having paid for its start-up (Python,
# pyzmq, the project's modules) before: it joins a running producer within its interval.
# Started as `-c GATED GATE -m MODULE ARGS...`. The module itself is imported to load
# what it imports, then forgotten: it runs afresh as __main__, as -m runs it (runpy
# warns of a module it is to run that was imported already).
GATED = (
    "import os, runpy, sys, time\n"
    "import hardened.consumer\n"
    "del sys.modules['hardened.consumer']\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.01)\n"
    "sys.argv = sys.argv[3:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


# The same for the first read's consumer.py, a script: `-c GATED_SCRIPT GATE consumer.py ARGS...`.
GATED_SCRIPT = (
    "import os, runpy, sys, time\n"
    "import argparse, json, zmq\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.01)\n"
    "sys.argv = sys.argv[2:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def order_number(line: str) -> int:
    match = re.search(r"p1-(\d+)", line)
    assert match, f"no order id in the README's line {line!r}"
    return int(match.group(1))


def ctrl_c(*scripts: Script) -> None:
    for script in scripts:
        script.signal(signal.SIGINT)
    for script in scripts:
        assert script.wait() == 0, script.output


def delivered(*riders: Script) -> int:
    return sum(" delivered p1-" in line for rider in riders for line in rider.stdout)


def terminal_session(scripts: Scripts, tmp_path: Path, read: str) -> list[str]:
    """The three terminals, of the first read (README) or the hardened one (docs/hardened.md):
    the producer with --seed 1, rider-1, and rider-2 joining after as many orders as in
    the sample; Ctrl-C after the sample's last order."""
    first = read == "first"
    prefix = "first-terminals" if first else "terminals"
    producer_cmd, consumer_cmd = (
        (["producer.py"], ["consumer.py"]) if first else (["-m", "hardened.producer"], ["-m", "hardened.consumer"])
    )
    producer_lines = sample(f"{prefix}-producer")
    joined = next(i for i, line in enumerate(producer_lines) if "consumer connected (2 so far)" in line)
    # The producer says who connected as it happens (it listens between orders): rider-2
    # joined after the order on the line before.
    before = order_number(producer_lines[joined - 1])
    last = max(order_number(line) for line in producer_lines if ": sent p1-" in line)
    interval = "0.4" if first else "0.2"
    producer = scripts(*producer_cmd, "--seed", "1", "--bind", LOOPBACK_ANY_PORT, "--interval", interval)
    endpoint = bound_endpoint(producer)

    def rider(name: str, *before: str) -> Script:
        return scripts(*before, *consumer_cmd, "--name", name, "--connect", endpoint, "--speed", "0.05")

    rider_1 = rider("rider-1")
    gate = tmp_path / read / "rider-2 may start"
    gate.parent.mkdir(parents=True)
    rider_2 = rider("rider-2", "-c", GATED_SCRIPT if first else GATED, str(gate))
    producer.wait_for_line(f"sent p1-{before:06d}")
    gate.touch()
    producer.wait_for_line(f"sent p1-{last:06d}")
    ctrl_c(producer)
    sent = len([line for line in producer.stdout if ": sent p1-" in line])
    wait_until(lambda: delivered(rider_1, rider_2) == sent, what=f"the riders to deliver all {sent} orders")
    if not first:  # the heartbeats tell hardened riders that the producer is gone
        for each in (rider_1, rider_2):
            each.wait_for_line("lost producer ")
    ctrl_c(rider_1, rider_2)
    return [
        *mismatches(f"{prefix}-producer", producer),
        *mismatches(f"{prefix}-rider-1", rider_1),
        *mismatches(f"{prefix}-rider-2", rider_2),
    ]


def curve_session(scripts: Scripts, tmp_path: Path) -> list[str]:
    """docs/security.md's CURVE walkthrough: keys made as it says, the producer, rider-3 whose
    key the platform does not know, rider-9 without CURVE, then rider-1 and rider-2;
    Ctrl-C. In the README rider-3 knocks again every 2 s and the producer counts those
    refusals; here three rider-3s knock once each, which the producer counts the same way."""
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    keys.mkdir(parents=True)
    allowed.mkdir()
    for name in ("platform", "rider-1", "rider-2", "rider-3"):
        public, _ = make_certificates(keys, name)
        if name in ("rider-1", "rider-2"):
            (allowed / Path(public).name).write_bytes(Path(public).read_bytes())
    secret, platform_key = str(keys / "platform.key_secret"), keys / "platform.key"
    curve = ["--curve-secret", secret, "--curve-allow", str(allowed)]
    producer = scripts("-m", "hardened.producer", *curve, "--bind", LOOPBACK_ANY_PORT, "--interval", "0.1")
    endpoint = bound_endpoint(producer)

    def rider(name: str, *curve: str) -> Script:
        return scripts("-m", "hardened.consumer", "--name", name, "--connect", endpoint, "--speed", "0.05", *curve)

    def curve_rider(name: str) -> Script:
        return rider(name, "--curve-secret", str(keys / f"{name}.key_secret"), "--curve-server", str(platform_key))

    unknown = [curve_rider("rider-3") for _ in range(3)]
    for rogue in unknown:
        rogue.wait_for_line("refused us: CURVE key not authorised", stream="stderr")
    no_curve = rider("rider-9")
    producer.wait_for_line("refused a connection: (security mismatch|handshake failed)", stream="stderr")
    riders = [curve_rider("rider-1"), curve_rider("rider-2")]
    producer.wait_for_line(r"consumer connected \(2 so far\)")  # and every refusal before it counted
    producer.wait_for_line("sent p1-000002")  # orders, not 1 order
    no_curve.wait_for_line("refused us", stream="stderr")  # a closed handshake: said when it comes again
    ctrl_c(producer, *riders, *unknown, no_curve)
    return [
        *mismatches("curve-producer", producer),
        *mismatches("curve-rider-3", unknown[0]),
        *mismatches("curve-rider-9", no_curve),
    ]


@posix_signals
def test_the_samples_of_terminal_sessions(scripts: Scripts, tmp_path: Path) -> None:
    sessions: list[Callable[[Scripts, Path], list[str]]] = [
        functools.partial(terminal_session, read="hardened"),
        functools.partial(terminal_session, read="first"),
        curve_session,
    ]
    with ThreadPoolExecutor(len(sessions)) as pool:  # side by side: each mostly waits
        results = [pool.submit(session, scripts, tmp_path / f"session-{n}") for n, session in enumerate(sessions)]
        check(*(result.result() for result in results))


# --- the benchmark table ---


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="the README's run is from Linux: bench.py on Windows has other start-up rows (no fork, no fork server)",
)
def test_the_benchmark_tables_rows_are_rows_that_bench_py_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = benchmark_labels(sample("benchmark"))
    assert len(readme) > 20, readme
    printed = labels_bench_py_prints(monkeypatch)
    missing = [label for label in readme if label not in printed]
    assert not missing, f"README rows that bench.py does not print: {missing}; it prints {printed}"


def benchmark_labels(lines: list[str]) -> list[tuple[str, ...]]:
    """(section, case, C) of every row of a benchmark table as bench.py prints it."""
    rows = [tuple(re.split(r"\s{2,}", line.strip())) for line in lines]
    sections = ("throughput", "ratio", "latency", "round-robin", "startup", "same-work", "growth", "riders")
    return [row[:3] for row in rows if row[0] in sections]


def labels_bench_py_prints(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The rows' labels of `python benchmarks/bench.py`, without its minute of measuring:
    its own section functions, with every run they time replaced by an instant fake
    whose orders all arrive. The labels are made by the code that prints them; only the
    results are made up (and not looked at)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import harness

    import bench
    import growth
    import latency
    import pipelines
    import round_robin
    import same_work
    import startup
    import throughput

    def run(n: int, *args: object, **kwargs: object) -> pipelines.Run:
        """All n orders arrived (throughput reads no record)."""
        return pipelines.Run(n, 1.0, (0.1, 0.1, 0.0))

    def run_with_records(n: int, *args: object, **kwargs: object) -> pipelines.Run:
        """All n orders arrived, one a millisecond, each received and delivered at once."""
        start = datetime.now(timezone.utc)
        times = [(start + timedelta(milliseconds=i)).isoformat() for i in range(n)]
        records = [
            {"order_id": f"p1-{i + 1:06d}", "consumer": "rider-1", "delivery_s": 0.1}
            | {"created_at": at, "received_at": at, "done_at": at}
            for i, at in enumerate(times)
        ]
        return pipelines.Run(n, 1.0, (0.1, 0.1, 0.0), records)

    def dispatcher(orders: list[dict], *args: object) -> list[dict]:
        return [dict(order, consumer="rider-1", received=0.0, done=1.0) for order in orders]

    monkeypatch.setattr(throughput, "run_project", run)
    monkeypatch.setattr(throughput, "run_bare", run)
    monkeypatch.setattr(throughput, "step_costs", lambda *args: "")
    monkeypatch.setattr(latency, "run_bare", run)
    monkeypatch.setattr(latency, "run_project", run_with_records)
    monkeypatch.setattr(round_robin, "run_project", run_with_records)
    monkeypatch.setattr(round_robin, "run_dispatcher", dispatcher)

    def runpy(orders: int, *args: object, **kwargs: object) -> dict:
        return {"wall": 0.2, "busiest": 0.1, "overhead": 0.1, "delivered": orders, "exactly_once": True}

    def growing(orders: int, *args: object, **kwargs: object) -> dict:
        once = {"delivered": orders, "exactly_once": True, "workers": 11}
        return once | {"wall": 1.0, "peak": 30.0, "rider": 25.0, "producer": 25.0}

    monkeypatch.setattr(startup, "run_runpy", runpy)
    monkeypatch.setattr(growth, "measure", growing)
    monkeypatch.setattr(same_work, "run_side", lambda kind, n, *args: same_work.Round(n, 1000.0, 1.0, 0.1, 0.2))
    monkeypatch.setattr(startup, "run_probe", lambda *args: {"start_s": 0.1, "stop_s": 0.1})
    table = harness.Table()
    config = harness.parse_args([], list(bench.SECTIONS))  # python benchmarks/bench.py, as in the README
    for section in bench.SECTIONS.values():
        section(config, table)
    return benchmark_labels(["  ".join(row) for row in table.rows])
