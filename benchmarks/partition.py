"""Partition: what a rider who loses signal costs, with and without heartbeats.

Why: on loopback a rider that dies closes its connection and the producer knows at
once. Across a network it can simply go silent (a phone out of coverage: no FIN, no
RST), and TCP keeps such a connection "up" for many minutes, while PUSH keeps handing
that rider its share of the orders. Heartbeats are ZeroMQ's answer; this measures it,
as in the issue that brought them in (issue 14):

- hosts made of Linux network namespaces (tests/hosts.py): the producer's and two
  riders', on one switch; the riders deliver at once (--speed 0);
- the producer sends --orders (60) at --rate (10 a second); after --cut-after (23) have
  been sent, rider-1's cable is pulled (its switch port set down) and stays out;
- per heartbeat setting, both sides alike: off (--heartbeat 0), slower (1 s, timeout
  3 s), the default (0.5 s / 1.5 s); --rounds (3) runs each.

Reported per setting, as median and range over the rounds: orders lost (sent, and
delivered by no rider), how long after the cut the producer printed rider-1's
`consumer ... gone` line, and how long until rider-1 printed `lost producer`.

Linux and root only (network namespaces):

    sudo .venv/bin/python benchmarks/partition.py [--rounds 3] [--orders 60] [--rate 10] [--cut-after 23]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # tests/hosts.py and the test suite's Script

import hosts  # noqa: E402  (needs the sys.path entry above)
from conftest import Script  # noqa: E402

PORT = 5557
SETTINGS = {  # what the table calls it: the options, for the producer and both riders
    "off (`--heartbeat 0`)": ("--heartbeat", "0"),
    "1 s / 3 s": ("--heartbeat", "1", "--heartbeat-timeout", "3"),
    "default (0.5 s / 1.5 s)": (),
}
SETTLE_S = 0.5  # a rider that said nothing new for this long has delivered all it got


@dataclass
class Round:
    lost: int
    producer_noticed_s: float | None  # None: never, by the end of the round
    rider_noticed_s: float | None


def said(script: Script, pattern: str) -> bool:
    """Whether a line of the script's output matches `pattern`."""
    return any(re.search(pattern, line) for line in list(script.stdout))


def seqs(script: Script, verb: str) -> set[int]:
    """The order numbers a producer sent (verb "sent") or a rider delivered ("delivered")."""
    return {int(m.group(1)) for line in list(script.stdout) if (m := re.search(rf"{verb} p1-(\d{{6}})", line))}


def wait(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)  # a polling interval: the resolution of the times measured


def one_round(cfg: argparse.Namespace, beats: tuple[str, ...]) -> Round:
    started: list[Script] = []

    def run(host: hosts.Host, *args: str) -> Script:
        started.append(Script(*host.python(*args), cwd=REPO))
        return started[-1]

    with hosts.network("platform", "rider-1", "rider-2") as lan:
        platform, away = lan["platform"], lan["rider-1"]
        try:
            producer = run(
                platform,
                *("-m", "hardened.producer", "--bind", f"tcp://0.0.0.0:{PORT}", "--seed", "1", "--wait-consumers", "2"),
                *("--orders", str(cfg.orders), "--interval", str(1 / cfg.rate), *beats),
            )
            rider = ("-m", "hardened.consumer", "--speed", "0", "--connect", f"tcp://platform:{PORT}")
            riders = [run(lan[name], *rider, "--name", name, *beats) for name in ("rider-1", "rider-2")]
            wait(lambda: cfg.cut_after in seqs(producer, "sent"), 20, f"order {cfg.cut_after} to be sent")
            away.cut()
            cut = time.monotonic()
            noticed: dict[str, float] = {}
            gone = rf"consumer {re.escape(away.address)}:\d+ gone"

            def notice() -> bool:
                """Note when each side noticed; done once the producer has sent everything."""
                for who, script, pattern in (("producer", producer, gone), ("rider", riders[0], r"lost producer")):
                    if who not in noticed and said(script, pattern):
                        noticed[who] = time.monotonic() - cut
                return producer.proc.poll() is not None

            wait(notice, cfg.orders / cfg.rate + 30, "the producer to send every order and exit")
            # rider-2 has the rest once it has said nothing new for SETTLE_S.
            last = (len(riders[1].stdout), time.monotonic())

            def settled() -> bool:
                nonlocal last
                notice()
                if len(riders[1].stdout) != last[0]:
                    last = (len(riders[1].stdout), time.monotonic())
                return time.monotonic() - last[1] >= SETTLE_S

            wait(settled, 30, "rider-2 to deliver what it got")
            delivered = seqs(riders[0], "delivered") | seqs(riders[1], "delivered")
            return Round(cfg.orders - len(delivered), noticed.get("producer"), noticed.get("rider"))
        finally:
            for script in started:
                script.stop()


def spread(values: Sequence[float], unit: str = "", digits: int = 0) -> str:
    """Median (min to max); "never" for no values at all."""
    if not values:
        return "never"
    low, median, high = (f"{value:.{digits}f}" for value in (min(values), statistics.median(values), max(values)))
    return f"{median}{unit}" if low == high else f"{median}{unit} ({low} to {high})"


def times(rounds: list[Round], attribute: str) -> str:
    seen = [value for r in rounds if (value := getattr(r, attribute)) is not None]
    never = len(rounds) - len(seen)
    text = spread(seen, " s", 2)
    return text if not seen or not never else f"{text}; never in {never} of {len(rounds)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Orders lost and detection time when a rider loses signal.")
    parser.add_argument("--rounds", type=int, default=3, help="runs per heartbeat setting (default %(default)s)")
    parser.add_argument("--orders", type=int, default=60, help="orders the producer sends (default %(default)s)")
    parser.add_argument("--rate", type=float, default=10.0, help="orders a second (default %(default)s)")
    parser.add_argument("--cut-after", type=int, default=23, help="cut rider-1 after this order (default %(default)s)")
    cfg = parser.parse_args(argv)
    if reason := hosts.unavailable():
        sys.exit(f"partition.py needs Linux network namespaces, as root: {reason}")
    rows = []
    for name, beats in SETTINGS.items():
        rounds = []
        for n in range(1, cfg.rounds + 1):
            sys.stderr.write(f"partition: heartbeats {name}, round {n} of {cfg.rounds}\n")
            rounds.append(one_round(cfg, beats))
        lost = spread([r.lost for r in rounds])
        rows.append(f"| {name} | {lost} | {times(rounds, 'producer_noticed_s')} | {times(rounds, 'rider_noticed_s')} |")
    print(
        f"{cfg.orders} orders at {cfg.rate:g}/s to 2 riders on other hosts; rider-1's link cut after order "
        f"{cfg.cut_after}, for good. Median (min to max) of {cfg.rounds} rounds.\n"
    )
    print("| heartbeats | orders lost | producer noticed, after the cut | rider noticed |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))
    print(
        "\nnever: not by the end of the round. A producer that has sent its last order stops watching "
        "(it exits), so a timeout longer than the rest of the run goes unseen, and saves nothing."
    )
    command = " ".join(["python", "benchmarks/partition.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"\n`{command}` (Linux, as root)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
