"""Property-based: whatever arrives from the network, parse_order accepts or rejects.

It may return an order or raise InvalidOrder; any other exception would crash a rider
(or, caught too broadly, hide a bug). Hypothesis throws arbitrary bytes and arbitrary
JSON at it, including near-misses built from a real order.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from hardened.orders import InvalidOrder, make_orders, parse_order, utc_now

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


def accepts_or_rejects(data: bytes) -> None:
    try:
        order = parse_order(data)
    except InvalidOrder as exc:
        assert str(exc)  # a reason to print
    else:
        assert isinstance(order, dict)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    accepts_or_rejects(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json(value: object) -> None:
    # allow_nan: Python's json writes NaN and Infinity, which parse_order must refuse.
    accepts_or_rejects(json.dumps(value, allow_nan=True).encode())


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["order_id", "producer", "restaurant", "items", "total", "customer", "address", "created_at", "delivery_s"]
    ),
    json_values,
)
def test_a_real_order_with_one_field_replaced(field: str, value: object) -> None:
    order = next(make_orders("p1", 1, (0.1, 1.0)))
    order["created_at"] = utc_now()
    order[field] = value
    accepts_or_rejects(json.dumps(order, allow_nan=True).encode())
