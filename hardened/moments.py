"""A finished run as moments on one clock: what the timeline (timeline.py) and the
trace (trace.py) draw.

Each completion record holds three moments of its order, all from the same machine's
clock: `created_at` (the producer sent it), `received_at` (a rider took it from its
queue) and `done_at` (delivered). Between the first two the order waited: in ZeroMQ's
queues, at a rider that was still busy, since PUSH hands out orders by count, not by
load. Time 0 is the first moment of the run.

    run = the_run(records, riders, producers, crash=(name, when, lost_ids, lost_count))
    for d in run.deliveries: d.wait_s, d.ride_s
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hardened.orders import split_order_id


@dataclass(frozen=True)
class Delivery:
    """A completion record on the run's clock: seconds since time 0."""

    order_id: str
    producer: str
    rider: str
    restaurant: str
    sent_s: float  # created_at; received_at for a record without it (no wait known)
    start_s: float  # received_at: the rider took it
    end_s: float  # done_at

    @property
    def wait_s(self) -> float:
        return max(self.start_s - self.sent_s, 0.0)

    @property
    def ride_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def number(self) -> str:
        """The order's number within its producer's orders, as a label: p1-000008 -> 8."""
        split = split_order_id(self.order_id)
        return str(split[1]) if split else self.order_id


@dataclass(frozen=True)
class Crash:
    """A rider killed on purpose (run.py --crash-consumer), and what died with it."""

    rider: str
    at_s: float
    lost: tuple[str, ...]  # the first few ids
    lost_count: int


@dataclass
class Run:
    deliveries: list[Delivery]  # by start, then order id: the same records give the same list
    riders: list[str]  # a row each, in this order; idle ones included
    producers: list[str]
    crash: Crash | None = None
    dead: list[str] = field(default_factory=list)  # riders that died, killed or not
    zero: datetime | None = None  # time 0, as a moment (None: no record)

    @property
    def finish_s(self) -> float:
        return max((d.end_s for d in self.deliveries), default=0.0)

    def by_rider(self) -> dict[str, list[Delivery]]:
        """Each rider's deliveries, in run.riders' order: one pass, whatever the riders."""
        mine: dict[str, list[Delivery]] = {rider: [] for rider in self.riders}
        for d in self.deliveries:
            mine[d.rider].append(d)
        return mine


def the_run(
    records: Sequence[Mapping[str, Any]],
    riders: Sequence[str],
    producers: Sequence[str],
    dead: Sequence[str] = (),
    crash: tuple[str, datetime, Sequence[str], int] | None = None,
) -> Run:
    """The records as a Run. A rider or producer in the records (or the crash) but not
    in the lists gets a row or a colour after the others, so that everything is drawn. `crash`:
    the killed rider, when, the ids lost with it (the first few) and how many.
    Raises ValueError for a record without valid ISO-8601 times (KeyError if missing):
    the sink lets only valid ones through (report.record_or_reason)."""
    moments = [
        (
            datetime.fromisoformat(r.get("created_at") or r["received_at"]),
            datetime.fromisoformat(r["received_at"]),
            datetime.fromisoformat(r["done_at"]),
        )
        for r in records
    ]
    killed_at = [crash[1]] if crash else []
    zero = min([sent for sent, _, _ in moments] + killed_at, default=None)
    found = sorted(
        (
            Delivery(
                str(r["order_id"]),
                str(r["producer"]),
                str(r["consumer"]),
                str(r.get("restaurant", "?")),
                (sent - zero).total_seconds(),  # type: ignore[operator]  # zero is set when there are records
                (taken - zero).total_seconds(),  # type: ignore[operator]
                (done - zero).total_seconds(),  # type: ignore[operator]
            )
            for r, (sent, taken, done) in zip(records, moments, strict=True)
        ),
        key=lambda d: (d.start_s, d.order_id),
    )
    crashed = {crash[0]} if crash else set()
    riders = [*riders, *sorted(({d.rider for d in found} | crashed) - set(riders))]
    producers = [*producers, *sorted({d.producer for d in found} - set(producers))]
    lost = None
    if crash and zero is not None:
        name, at, ids, count = crash
        lost = Crash(name, (at - zero).total_seconds(), tuple(ids), count)
    return Run(found, riders, producers, lost, list(dead), zero)
