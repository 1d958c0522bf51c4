"""The wire format: what the producer makes, what the consumer accepts and rejects."""

from __future__ import annotations

import json
from itertools import islice

import pytest

from hardened.orders import MAX_DELIVERY_S, InvalidOrder, make_orders, parse_order, utc_now


def an_order(**changes: object) -> dict:
    order = next(make_orders("p1", 7, (0.1, 1.0)))
    order["created_at"] = utc_now()
    order.update(changes)
    return order


def encode(order: object) -> bytes:
    return json.dumps(order).encode()


def test_every_generated_order_is_valid_and_has_the_documented_fields() -> None:
    for order in islice(make_orders("p1", 3, (0.2, 1.0)), 200):
        order["created_at"] = utc_now()
        parsed = parse_order(encode(order))
        assert set(parsed) >= {
            "order_id", "producer", "restaurant", "items", "total",
            "customer", "address", "created_at", "delivery_s",
        }  # fmt: skip
        assert parsed["producer"] == "p1" and parsed["order_id"].startswith("p1-")
        assert 0.2 <= parsed["delivery_s"] <= 1.0
        assert parsed["total"] == round(sum(i["qty"] * i["price"] for i in parsed["items"]), 2)


def test_orders_are_reproducible_from_the_seed_and_ids_unique() -> None:
    first = list(islice(make_orders("p2", 11, (0, 2)), 50))
    again = list(islice(make_orders("p2", 11, (0, 2)), 50))
    assert first == again
    assert len({o["order_id"] for o in first}) == 50
    assert first[0]["order_id"] == "p2-000001"


def test_a_valid_order_is_returned_as_is() -> None:
    order = an_order()
    assert parse_order(encode(order)) == order


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2, 3]", "not a JSON object but list"),
        (b'"just a string"', "not a JSON object but str"),
        (encode({k: v for k, v in an_order().items() if k != "address"}), "'address' missing"),
        (encode(an_order(customer=42)), "'customer' missing or not a string"),
        (encode(an_order(created_at="yesterday")), "'created_at' is not an ISO-8601"),
        (encode(an_order(items="pizza")), "'items'"),
        (encode(an_order(items=[{"name": "x", "qty": "2", "price": 1}])), "'items'"),
        (encode(an_order(total=True)), "'total'"),
        (encode(an_order(delivery_s=-1)), "'delivery_s' missing or not a number >= 0"),
        (encode(an_order(delivery_s="1.5")), "'delivery_s'"),
        (encode(an_order(delivery_s=MAX_DELIVERY_S + 1)), f"over the {MAX_DELIVERY_S:g} s cap"),
        (encode(an_order(delivery_s=1e300)), "cap"),
        (encode(an_order()).replace(b'"delivery_s": ', b'"delivery_s": NaN, "x": '), "NaN is not a number"),
        (encode(an_order()).replace(b'"delivery_s": ', b'"delivery_s": Infinity, "x": '), "Infinity"),
        (encode(an_order()).replace(b'"delivery_s": ', b'"delivery_s": 1e999, "x": '), "'delivery_s'"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_invalid_messages_are_rejected_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidOrder, match=reason.replace("(", r"\(")):
        parse_order(data)
