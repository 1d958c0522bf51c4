"""The wire format: what an order is, how the producer makes one, how a rider checks one.

An order is one ZeroMQ frame holding a UTF-8 JSON object (README, "Wire format").
Never pickle: unpickling bytes from the network runs code that the sender chose. The
producer's orders are seeded (a seed, the same orders) and numbered per producer
(p1-000001, ...), so run.py knows which ids to expect from the counts alone. A rider
trusts nothing that arrives: parse_order() accepts a valid order or raises
InvalidOrder with the reason, and nothing else, whatever JSON is in whatever field;
and no text with a control character in it gets through to be printed. Here too: the lines that say an order
was sent or delivered, and the completion record a rider sends to a sink.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TypeGuard

# The longest delivery a rider accepts. delivery_s comes from the network, and a buggy
# or hostile producer must not be able to put a rider to sleep for a year.
MAX_DELIVERY_S = 60.0

# The largest message a rider's PULL socket accepts (its MAXMSGSIZE). A real order is
# about 300 bytes; without a limit a peer could make a rider allocate gigabytes.
MAX_ORDER_BYTES = 64 * 1024

MENUS = {
    "Pizza Roma": [("Margherita", 8.50), ("Diavola", 10.00), ("Tiramisu", 5.50)],
    "Sushi Go": [("Salmon nigiri", 6.00), ("California roll", 7.50), ("Miso soup", 3.00)],
    "Taco Loco": [("Carnitas taco", 3.50), ("Burrito", 9.00), ("Horchata", 2.50)],
    "Curry House": [("Chicken korma", 11.00), ("Dal", 7.00), ("Naan", 2.00)],
    "Green Bowl": [("Falafel bowl", 9.50), ("Poke bowl", 12.00), ("Lemonade", 3.00)],
}
CUSTOMERS = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"]
STREETS = ["Elm St", "Oak Ave", "Pine Rd", "Maple Ln", "Cedar Ct"]

STRING_FIELDS = ("order_id", "producer", "restaurant", "customer", "address", "created_at")

# What order_id() makes, and nothing else: the producer's name, "-", and the sequence
# number in ASCII digits: six, zero-padded (000001 to 999999), or more past 999999,
# unpadded, up to 18 (a producer never sends 10**18 orders, and a 5,000-digit id is
# not a number that int() takes). `\d` would take any script's digits ("١٢٣٤٥٦").
ORDER_ID = re.compile(r"(.+)-([0-9]{6}|[1-9][0-9]{6,17})", re.DOTALL)

# The largest amount (total, price) a rider accepts: a float's. A JSON integer can
# have any number of digits, and comparing it with this never converts it to a float
# (which raises OverflowError past 1e308).
MAX_NUMBER = sys.float_info.max


def order_id(producer: str, seq: int) -> str:
    """Order ids are unique across producers as long as producers' names are."""
    return f"{producer}-{seq:06d}"


def split_order_id(text: str) -> tuple[str, int] | None:
    """(producer, seq) of an id that order_id() makes (seq from 1), or None."""
    match = ORDER_ID.fullmatch(text)
    if not match or not int(match.group(2)):
        return None
    return match.group(1), int(match.group(2))


def printable(value: object) -> bool:
    """A str that can go to a terminal as it is: no control character (C0, C1, DEL, so
    no escape sequence, CR, newline or backspace), no lone surrogate, nothing unassigned."""
    return isinstance(value, str) and value.isprintable()


def aware_time(value: object) -> datetime | None:
    """An ISO-8601 date and time with its UTC offset, as utc_now() writes it; else None
    (a date alone, or a time without an offset, is no moment: it can't be compared with
    one that has an offset)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        moment.astimezone(timezone.utc)  # OverflowError at the ends of the calendar
    except (ValueError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else None


def make_orders(producer: str, seed: int | None, delivery: tuple[float, float]) -> Iterator[dict]:
    """Endless seeded orders. run.py replays the same stream to know, before anything is
    sent, which ids to expect and how much delivery work they add up to."""
    rng = random.Random(seed)
    restaurants = list(MENUS)
    for seq in range(1, sys.maxsize):
        restaurant = rng.choice(restaurants)
        picks = [(name, rng.randint(1, 2), price) for name, price in rng.sample(MENUS[restaurant], rng.randint(1, 3))]
        yield {
            "order_id": order_id(producer, seq),
            "producer": producer,
            "restaurant": restaurant,
            "items": [{"name": name, "qty": qty, "price": price} for name, qty, price in picks],
            "total": round(sum(qty * price for _, qty, price in picks), 2),
            "customer": rng.choice(CUSTOMERS),
            "address": f"{rng.randint(1, 99)} {rng.choice(STREETS)}",
            "delivery_s": round(rng.uniform(*delivery), 3),
        }


def utc_now() -> str:
    """The current time as ISO-8601 UTC, as the wire format wants it."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class InvalidOrder(ValueError):
    """A message that is not a valid order; str() says why."""


def parse_order(data: bytes) -> dict:
    """Decode and validate one order. Raises InvalidOrder, and nothing else, on bad input."""
    try:
        # parse_constant rejects NaN and Infinity, which Python's json accepts by default.
        order = json.loads(data.decode("utf-8"), parse_constant=reject_constant)
    except UnicodeDecodeError:
        raise InvalidOrder("not UTF-8") from None
    except RecursionError:
        raise InvalidOrder("JSON nested too deeply") from None
    except InvalidOrder:
        raise
    except ValueError as exc:
        raise InvalidOrder(f"not JSON ({exc})") from None
    if not isinstance(order, dict):
        raise InvalidOrder(f"not a JSON object but {type(order).__name__}")
    for name in STRING_FIELDS:
        if not isinstance(order.get(name), str):
            raise InvalidOrder(f"{name!r} missing or not a string")
        if not printable(order[name]):  # it would go to a terminal: escape sequences, forged lines
            raise InvalidOrder(f"{name!r} holds control characters")
    if (split_order_id(order["order_id"]) or ("",))[0] != order["producer"]:
        raise InvalidOrder("'order_id' is not the producer's name, '-' and a sequence number")
    if aware_time(order["created_at"]) is None:
        raise InvalidOrder("'created_at' is not an ISO-8601 date and time with a UTC offset")
    items = order.get("items")
    if not isinstance(items, list) or not all(is_item(item) for item in items):
        raise InvalidOrder("'items' missing or not a list of {name, qty, price}")
    if not is_number(order.get("total")):
        raise InvalidOrder("'total' missing or not a number")
    delivery_s = order.get("delivery_s")
    if not is_number(delivery_s) or delivery_s < 0:
        raise InvalidOrder("'delivery_s' missing or not a number >= 0")
    if delivery_s > MAX_DELIVERY_S:
        raise InvalidOrder(f"'delivery_s' over the {MAX_DELIVERY_S:g} s cap")  # not {delivery_s:g}: 10**400
    return order


def reject_constant(name: str) -> None:
    raise InvalidOrder(f"{name} is not a number")


def is_number(value: object) -> TypeGuard[float]:
    # bool is an int in Python, but `"total": true` is not a price. Not math.isfinite():
    # it converts an int to a float, and 10**400 raises OverflowError. NaN compares False.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -MAX_NUMBER <= value <= MAX_NUMBER


def is_item(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and isinstance(qty := item.get("qty"), int)
        and not isinstance(qty, bool)
        and qty >= 1
        and is_number(price := item.get("price"))
        and price >= 0
    )


def sent_line(name: str, order: dict) -> str:
    """How producer `name` says it sent an order (benchmarks/bare_pipeline.py says it so too)."""
    return f"{name}: sent {order['order_id']} {route(order)} ({order['delivery_s']:.2f} s)"


def delivered_line(name: str, order: dict, took_s: float) -> str:
    """How rider `name` says it delivered an order."""
    return f"{name} delivered {order['order_id']} from {order['producer']} ({route(order)}) in {took_s:.2f} s"


def route(order: dict) -> str:
    return f"{order['restaurant']} -> {order['address']}"


def completion_record(order: dict, rider: str, received_at: str) -> dict:
    """What a rider reports to a results sink once an order is delivered."""
    return {
        "order_id": order["order_id"],
        "producer": order["producer"],
        "consumer": rider,
        "restaurant": order["restaurant"],
        "delivery_s": order["delivery_s"],
        "created_at": order["created_at"],  # sent: the timeline draws the wait from here to received_at
        "received_at": received_at,
        "done_at": utc_now(),
    }


def add_delivery_option(parser: argparse.ArgumentParser, default: tuple[float, float]) -> None:
    parser.add_argument(
        "--delivery",
        type=delivery_range,
        default=default,
        metavar="MIN-MAX",
        help=f"range of simulated delivery seconds (default {default[0]:.1f}-{default[1]:.1f})",
    )


def delivery_range(text: str) -> tuple[float, float]:
    """argparse type for --delivery MIN-MAX (seconds); one number means MIN = MAX."""
    low, _, high = text.partition("-")
    try:
        span = (float(low), float(high or low))
    except ValueError:
        span = (math.nan, math.nan)
    if not all(0 <= value < math.inf for value in span):  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected MIN-MAX in seconds, got {text}")
    if not span[0] <= span[1] <= MAX_DELIVERY_S:
        raise argparse.ArgumentTypeError(f"need MIN <= MAX <= {MAX_DELIVERY_S:g}, got {text}")
    return span
