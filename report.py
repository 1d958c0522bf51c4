"""The accounting behind run.py's report: which orders it expects, which arrived, and
who delivered them; then the report itself.

The producers' orders are seeded, so the Plan knows every order id and its delivery
time before anything is sent. Against it the report checks what the pattern promises
(every order delivered exactly once) and shows what it does not (an even spread of
work: round robin is by count, not by load).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import islice

from cli import say

from orders import make_orders

BAR_WIDTH = 30  # characters in the busiest rider's bar in the report


@dataclass
class Plan:
    """What the producers will send, known before they start: their orders are seeded."""

    expected: dict[str, float] = field(default_factory=dict)  # order id -> delivery_s

    def add(self, name: str, seed: int, orders: int, delivery: tuple[float, float]) -> None:
        for order in islice(make_orders(name, seed, delivery), orders):
            self.expected[order["order_id"]] = order["delivery_s"]


@dataclass
class Results:
    records: list[dict] = field(default_factory=list)  # completion records, as they came
    dead: list[str] = field(default_factory=list)  # riders that died before we stopped them
    killed: str = ""  # the rider --crash-consumer killed


def parse_record(data: bytes) -> dict | None:
    """A completion record, or None: the sink's port is open to every local process,
    so what arrives there is checked too."""
    try:
        record = json.loads(data)
        names = (record["order_id"], record["consumer"], record["producer"])
        if all(isinstance(name, str) for name in names) and float(record["delivery_s"]) >= 0:
            return record
    except (ValueError, TypeError, KeyError):
        pass
    return None


def report(results: Results, plan: Plan, riders: list[str], producers: list[str], speed: float, wall_s: float) -> bool:
    """Print the table and the summary. True if every order arrived exactly once, or
    if the only orders missing can have died with a rider that was killed."""
    orders = Counter(r["consumer"] for r in results.records)
    busy: dict[str, float] = defaultdict(float)
    split: dict[str, Counter] = defaultdict(Counter)
    for r in results.records:
        busy[r["consumer"]] += r["delivery_s"] * speed
        split[r["consumer"]][r["producer"]] += 1
    by_producer = len(producers) > 1
    # The bar shows busy time, not orders: equal counts can still be unequal work.
    scale = BAR_WIDTH / max(max(busy.values(), default=0.0), 1e-9)
    header = f"{'rider':<10}{'orders':>7}{'busy s':>8}" + "".join(f"{p:>6}" for p in producers if by_producer)
    say(header)
    for name in riders:
        split_cols = "".join(f"{split[name][p]:>6}" for p in producers if by_producer)
        fate = "" if name not in results.dead else "  (killed)" if name == results.killed else "  (died)"
        say(f"{name:<10}{orders[name]:>7}{busy[name]:>8.2f}{split_cols}  {'#' * round(busy[name] * scale)}{fate}")

    delivered = Counter(r["order_id"] for r in results.records)
    missing = sorted(set(plan.expected) - set(delivered))
    duplicated = sorted(order_id for order_id, n in delivered.items() if n > 1)
    unexpected = sorted(set(delivered) - set(plan.expected))
    counts = [orders[name] for name in riders if name not in results.dead]
    work = sum(plan.expected.values()) * speed
    makespan = max(busy.values(), default=0.0)
    say("")
    say(f"total orders: {len(plan.expected)} ({', '.join(producers)}), delivered {len(results.records)}")
    if results.dead:
        say(f"lost with {', '.join(results.dead)} ({len(missing)}): {' '.join(missing) or 'none'}")
        say(f"every other order delivered exactly once: {yes_no(not duplicated and not unexpected)}")
    else:
        say(f"delivered exactly once: {yes_no(not missing and not duplicated and not unexpected)}")
        if missing:
            say(f"  missing ({len(missing)}): {' '.join(missing)}")
    if duplicated or unexpected:
        say(f"  duplicated or unexpected ({len(duplicated + unexpected)}): {' '.join(duplicated + unexpected)}")
    spread = max(counts, default=0) - min(counts, default=0)
    say(f"spread: max - min orders per {'surviving ' if results.dead else ''}rider = {spread}")
    if by_producer:
        per_producer = [max(split[n][p] for n in riders) - min(split[n][p] for n in riders) for p in producers]
        say(f"spread per producer: {', '.join(f'{p} {d}' for p, d in zip(producers, per_producer, strict=True))}")
    say(f"expected work: {work:.2f} s; ideal time (work / {len(riders)} riders): {work / len(riders):.2f} s")
    say(f"wall time: {wall_s:.2f} s; busiest rider: {makespan:.2f} s; run.py overhead: {wall_s - makespan:.2f} s")
    # Orders lost with the rider we killed on purpose are the demo; with any other
    # death, something went wrong.
    return not duplicated and not unexpected and (not missing or results.dead == [results.killed])


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
