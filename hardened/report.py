"""The accounting behind run.py's report: which orders it expects, which arrived, and
who delivered them; then the report itself.

Order ids are the producer's name and a sequence number (p1-000001, p1-000002, ...), so
a Ledger knows every id to expect from the producers' names and order counts alone, and
keeps a byte per order: its memory stays flat as orders grow (a million orders: a
megabyte), while run.py keeps up with the records (the sink's queue has no cap: see
heartbeats.read_without_limit). Against it the report checks what the pattern promises (every order
delivered exactly once) and shows what it does not (an even spread of work: round
robin is by count, not by load).
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from hardened.cli import say as print_line

# split_order_id: orders.order_id()'s form, producer-seq, as a rider checks it too.
from hardened.orders import MAX_DELIVERY_S, aware_time, is_number, printable, split_order_id

BAR_WIDTH = 30  # characters in the busiest rider's bar in the report (fewer in a narrow terminal)
SHOWN_IDS = 20  # order ids listed by name in a line about missing or duplicated orders
# The largest completion record the sink takes (its MAXMSGSIZE): a record is ~250
# bytes. Anything bigger is nobody's record, and unbounded JSON nests past the parser's
# recursion limit or holds integers of any length.
MAX_RECORD_BYTES = 4096
RECORD_TEXT = ("order_id", "producer", "consumer", "received_at", "done_at")


class Ledger:
    """Which orders arrived, and how often: a byte per expected order, and a count per
    rider. Orders have ids from orders.order_id(), numbered 1..N per producer."""

    def __init__(self, orders: dict[str, int], keep_records: bool = False) -> None:
        self.seen = {producer: bytearray(count + 1) for producer, count in orders.items()}  # [0] unused
        self.delivered = 0  # records, duplicates included
        self.accounted = 0  # expected orders that arrived at least once
        self.expected = sum(orders.values())
        self.unexpected: list[str] = []  # ids no producer was going to send (the first few)
        self.unexpected_count = 0
        self.orders = Counter[str]()  # rider -> orders delivered
        self.busy: dict[str, float] = defaultdict(float)  # rider -> seconds of delivery
        self.split: dict[str, Counter[str]] = defaultdict(Counter)  # rider -> producer -> orders
        self.records: list[dict] | None = [] if keep_records else None  # for a timeline

    def add(self, record: dict, speed: float) -> None:
        self.delivered += 1
        rider, producer = record["consumer"], record["producer"]
        self.orders[rider] += 1
        self.busy[rider] += record["delivery_s"] * speed
        self.split[rider][producer] += 1
        if self.records is not None:
            self.records.append(record)
        id_producer, seq = split_order_id(record["order_id"]) or ("", 0)
        seen = self.seen.get(id_producer)
        if seen is not None and 0 < seq < len(seen):
            self.accounted += not seen[seq]
            seen[seq] = min(seen[seq] + 1, 2)  # 2: more than once
        else:
            self.unexpected_count += 1
            if len(self.unexpected) < SHOWN_IDS:
                self.unexpected.append(record["order_id"])

    def complete(self) -> bool:
        return self.accounted == self.expected

    def missing(self) -> tuple[int, list[str]]:
        """How many expected orders never arrived, and the first few of their ids."""
        return self.where(0)

    def duplicated(self) -> tuple[int, list[str]]:
        return self.where(2)

    def where(self, times: int) -> tuple[int, list[str]]:
        count = sum(seen[1:].count(times) for seen in self.seen.values())
        ids = (
            f"{producer}-{seq:06d}"
            for producer, seen in self.seen.items()
            for seq, n in enumerate(seen)
            if seq and n == times
        )
        return count, list(islice(ids, SHOWN_IDS))


@dataclass
class Results:
    ledger: Ledger
    dead: list[str] = field(default_factory=list)  # riders that died before we stopped them
    killed: str = ""  # the rider --crash-consumer killed
    killed_at: datetime | None = None  # and when
    holding: dict[str, str] = field(default_factory=dict)  # rider -> the order it took and had not done
    fates: dict[str, str] = field(default_factory=dict)  # producer -> "" (sent all), "running", "died of SIGKILL"...
    gave_up: bool = False  # run.py ended with every living rider run dry (sink.nothing_more_to_come)


def record_or_reason(data: bytes) -> dict | str:
    """A completion record, or why it is not one. Never raises, whatever the bytes: the
    record is checked as a rider checks an order (orders.parse_order), for what run.py
    does with it: every text printable (it goes to the terminal and the timeline), the
    order id its producer's, the delivery time a rider could have taken (0 to
    MAX_DELIVERY_S), both moments with a UTC offset (they are subtracted)."""
    if len(data) > MAX_RECORD_BYTES:  # the socket's MAXMSGSIZE stops these first
        return "too big"
    try:
        record = json.loads(data.decode("utf-8"), parse_constant=lambda name: None)  # NaN, Infinity: no number
    except RecursionError:
        return "nested too deeply"
    except ValueError:  # not UTF-8 (UnicodeDecodeError), not JSON, or a 5,000-digit int
        return "not JSON"
    if not isinstance(record, dict):
        return "not a JSON object"
    if not all(printable(record.get(name)) for name in RECORD_TEXT):
        return "a text missing, not a string, or holding control characters"
    if "restaurant" in record and not printable(record["restaurant"]):  # older records have none
        return "'restaurant' not a string, or holding control characters"
    if (split_order_id(record["order_id"]) or ("",))[0] != record["producer"]:
        return "'order_id' not its producer's"
    delivery_s = record.get("delivery_s")
    if not (is_number(delivery_s) and 0 <= delivery_s <= MAX_DELIVERY_S):
        return f"'delivery_s' not a number from 0 to {MAX_DELIVERY_S:g}"
    times = [record["received_at"], record["done_at"], *([record["created_at"]] if "created_at" in record else [])]
    if not all(aware_time(at) is not None for at in times):
        return "a time that is not ISO-8601 with a UTC offset"
    record["delivery_s"] = float(delivery_s)
    return record


def report(results: Results, riders: list[str], producers: list[str], wall_s: float, width: int | None = None) -> bool:
    """Print the table and the summary. True if every order arrived exactly once, or
    if the only orders missing can have died with a rider that was killed.

    `width`: the columns a line may take (0: any). By default the terminal's on stdout
    (output_width): there a longer line wraps at a space, and the bars shrink to fit; in
    a pipe or a file the lines are whole, for whoever reads them next."""
    width = output_width() if width is None else width

    def say(line: str) -> None:
        for part in fit(line, width):
            print_line(part)

    ledger = results.ledger
    busy = ledger.busy
    by_producer = len(producers) > 1
    fates = {
        name: "" if name not in results.dead else "  (killed)" if name == results.killed else "  (died)"
        for name in riders
    }
    # The bar shows busy time, not orders: equal counts can still be unequal work.
    header = f"{'rider':<10}{'orders':>7}{'busy s':>8}" + "".join(f"{p:>6}" for p in producers if by_producer)
    # In a narrow terminal the bars shrink, so that a row with its fate fits on one line.
    room = width - len(header) - 2 - max((len(fate) for fate in fates.values()), default=0)
    bar_width = max(min(BAR_WIDTH, room), 0) if width else BAR_WIDTH
    makespan = max(busy.values(), default=0.0)
    scale = bar_width / max(makespan, 1e-9)
    say(header)
    for name in riders:
        split_cols = "".join(f"{ledger.split[name][p]:>6}" for p in producers if by_producer)
        bar = "#" * round(busy[name] * scale)
        say(f"{name:<10}{ledger.orders[name]:>7}{busy[name]:>8.2f}{split_cols}  {bar}{fates[name]}")
    # Said, as the live view's header says its bars count orders: two charts, two measures.
    say(
        f"bars: busy seconds (a full bar: {makespan:.2f} s, the busiest rider)"
        if makespan
        else "bars: busy seconds (none: no rider was busy)"
    )

    missing, missing_ids = ledger.missing()
    duplicated, duplicated_ids = ledger.duplicated()
    wrong = duplicated + ledger.unexpected_count
    counts = [ledger.orders[name] for name in riders if name not in results.dead]
    work = sum(busy.values())
    say("")
    say(f"total orders: {ledger.expected} ({', '.join(producers)}), delivered {ledger.delivered}")
    groups = whereabouts(results)
    lost = {label: group for label, group in groups.items() if label.startswith("lost with")}
    other = sum(count for label, (count, _) in groups.items() if label not in lost)
    if results.dead:
        for label, (count, shown) in lost.items() or {f"lost with {', '.join(results.dead)}": (0, [])}.items():
            say(f"{label} ({count}): {ids(shown, count) or 'none'}")
        say(f"every other order delivered exactly once: {yes_no(not other and not wrong)}")
    else:
        say(f"delivered exactly once: {yes_no(not missing and not wrong)}")
    if other:
        other_ids = [oid for label, (_, shown) in groups.items() if label not in lost for oid in shown]
        say(f"  missing ({other}): {ids(other_ids[:SHOWN_IDS], other)}")
        for label, (count, shown) in groups.items():
            if label not in lost:
                say(f"    {label} ({count}): {ids(shown, count)}")
    if wrong:
        say(f"  duplicated or unexpected ({wrong}): {ids(duplicated_ids + ledger.unexpected, wrong)}")
    spread = max(counts, default=0) - min(counts, default=0)
    say(f"spread: max - min orders per {'surviving ' if results.dead else ''}rider = {spread}")
    if by_producer:
        split = ledger.split
        per_producer = [max(split[n][p] for n in riders) - min(split[n][p] for n in riders) for p in producers]
        say(f"spread per producer: {', '.join(f'{p} {d}' for p, d in zip(producers, per_producer, strict=True))}")
    # Shared by the riders that lived: a dead rider does no more of it (the timeline's ideal says the same).
    living = max(len(riders) - len(results.dead), 1)
    lived = " that lived" if results.dead else ""
    say(f"work delivered: {work:.2f} s; ideal time (work / {living} riders{lived}): {work / living:.2f} s")
    say(f"wall time: {wall_s:.2f} s; busiest rider: {makespan:.2f} s; run.py overhead: {wall_s - makespan:.2f} s")
    # Orders lost with the rider we killed on purpose are the demo; with any other
    # death, something went wrong.
    return not wrong and not other and (not missing or results.dead == [results.killed])


def output_width() -> int:
    """The columns a report line may take on stdout: one short of the terminal's width
    (a line that reaches the last column wraps on some terminals), or 0 (any) where
    stdout is no terminal."""
    try:
        if not sys.stdout.isatty():
            return 0
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):  # closed, no file behind it, or no size to read
        return 0
    return max(columns - 1, 1) if columns else 0  # 0: a terminal that was never given a size


# Spaces a wrapped line does not break at: between a number and its unit, so that no
# line begins with a bare "s" or "riders" ("2.81 s", "10 riders").
KEEP_TOGETHER = re.compile(r"(?<=\d) (?=(?:s|min|orders?|riders?)\b)")
GLUE = "\xa0"  # a no-break space: textwrap splits at ASCII whitespace only
CONTINUED = "    "  # the indent of a wrapped line's continuation, beyond the line's own


def fit(line: str, width: int) -> list[str]:
    """The line as it fits in `width` columns (0: any): wrapped at spaces, never inside a
    number or an order id, each continuation indented. A word longer than the width
    stays whole (the terminal wraps it)."""
    if not width or len(line) <= width:
        return [line]
    indent = line[: len(line) - len(line.lstrip(" "))]
    parts = textwrap.wrap(
        KEEP_TOGETHER.sub(GLUE, line),
        width,
        subsequent_indent=indent + CONTINUED,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [part.replace(GLUE, " ") for part in parts] or [line]


def whereabouts(results: Results) -> dict[str, tuple[int, list[str]]]:
    """Where each missing order is, as far as run.py can know (sink.Whereabouts): a
    line's label -> (how many, the first few ids). Lost with a dead rider: it had taken
    the order; or it was never taken, its producer sent it (exited 0), and every living
    rider ran dry after that, so it can only have been queued at a dead rider."""
    dead = results.dead
    holder = {order_id: rider for rider, order_id in results.holding.items()}
    groups: dict[str, tuple[int, list[str]]] = {}
    for producer, seen in results.ledger.seen.items():
        fate = results.fates.get(producer, "running")
        for seq in range(1, len(seen)):
            if seen[seq]:
                continue
            order_id = f"{producer}-{seq:06d}"
            rider = holder.get(order_id)
            if rider in dead:
                label = f"lost with {rider} ({'killed' if rider == results.killed else 'died'})"
            elif rider:
                label = f"taken by {rider}, alive, not delivered yet"
            elif fate == "running":
                label = f"never taken: not sent yet by {producer}, or queued at a rider"
            elif fate:
                label = f"never taken: {producer} {fate} before sending them"
                if dead or not results.gave_up:  # or else no rider can have them
                    label += f", or they were queued at {' or '.join(dead) if results.gave_up else 'a rider'}"
            elif results.gave_up and len(dead) == 1:
                label = f"lost with {dead[0]} ({'killed' if dead[0] == results.killed else 'died'})"
            elif results.gave_up and dead:
                label = f"lost with {' or '.join(dead)} (died), queued at one of them"
            elif results.gave_up:
                label = "never taken: sent, but no rider had it (lost on the way)"
            else:
                label = "never taken, queued at a living rider" + (f" or lost with {', '.join(dead)}" if dead else "")
            count, shown = groups.get(label, (0, []))
            if len(shown) < SHOWN_IDS:
                shown.append(order_id)
            groups[label] = (count + 1, shown)
    return groups


def ids(shown: list[str], count: int) -> str:
    """Order ids for a report line: all of them, or the first few and how many more."""
    more = count - len(shown)
    return " ".join(shown) + (f" ... and {more} more" if more > 0 else "")


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
