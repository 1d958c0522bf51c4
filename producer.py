"""The producer: the platform's server, pushing delivery orders to riders (ZeroMQ PUSH).

    python producer.py                                  # an order every 0.5 s until Ctrl-C
    python producer.py --orders 20 --wait-consumers 2   # wait for 2 riders, send 20 orders

It binds a PUSH socket; riders (consumer.py) connect, and PUSH hands each order to
exactly one of them, in turn. A line per rider and per order:

    p1: consumer connected (1 so far)
    p1: sent p1-000001 Sushi Go -> 27 Elm St (0.59 s)

Next read: hardened/producer.py, the same producer ready for the real world.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import zmq


def produce(
    bind: str,
    name: str,
    orders: int,
    interval: float,
    wait_consumers: int,
    seed: int | None,
    on_bound: Callable | None = None,
) -> int:
    """Bind, wait for riders, send `orders` orders (0: until Ctrl-C); tell on_bound where."""
    ctx = zmq.Context()  # one per process, made in the process that uses it
    push = ctx.socket(zmq.PUSH)
    # Before bind(), so that no rider's handshake is missed: each one is a message here.
    monitor = push.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    if sys.platform != "win32":  # output closed (| head): end at once and quietly, as shell tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sent = connected = 0
    stopped = ""
    try:
        push.bind(bind)
        endpoint = push.getsockopt_string(zmq.LAST_ENDPOINT)  # the real port, where `bind` asked for port 0
        waiting = f", waiting for {wait_consumers} consumers" if wait_consumers else ""
        print(f"{name}: bound {endpoint}{waiting}", flush=True)
        if on_bound:
            on_bound(endpoint)
        # The slow-joiner fix: PUSH takes turns only among riders already connected, so
        # without this wait the first rider to connect would get the whole first burst.
        while connected < wait_consumers:
            connected = count_consumers(monitor, connected, name, wait_ms=100)
        for order in make_orders(name, seed, orders):
            order["created_at"] = datetime.now(timezone.utc).isoformat()
            data = json.dumps(order).encode()  # JSON, one frame: never pickle from a network
            # No rider ready (none connected, or all full): wait in poll() with a timeout,
            # never in a blocking send(), which Ctrl-C cannot interrupt on Windows. Not
            # a poll() per order: one costs more than the send, so only when it is needed.
            while not send_now(push, data):
                push.poll(100, zmq.POLLOUT)
                connected = count_consumers(monitor, connected, name)
            if not connected:  # a rider took it, but its handshake's event can trail by a moment
                connected = count_consumers(monitor, connected, name, wait_ms=100)
            sent += 1
            print(
                f"{name}: sent {order['order_id']} {order['restaurant']} -> {order['address']} "
                f"({order['delivery_s']:.2f} s)",
                flush=True,
            )
            connected = count_consumers(monitor, connected, name)
            deadline = time.monotonic() + interval  # the pause: still saying who connects, at once
            while (left := deadline - time.monotonic()) > 0:
                connected = count_consumers(monitor, connected, name, wait_ms=int(min(left, 0.1) * 1000))
    except KeyboardInterrupt:
        stopped = "stopped, "
    finally:
        push.disable_monitor()
        monitor.close(linger=0)
        # An explicit linger: close() returns at once, and term() below then spends up to
        # 5 s handing queued orders over. With the default, -1, term() would wait for ever
        # while an order waits for a rider that stopped reading or vanished without a word.
        push.close(linger=5000)
        ctx.term()
    print(f"{name}: {stopped}sent {sent} {'order' if sent == 1 else 'orders'}", flush=True)
    return sent


def send_now(push: zmq.Socket, data: bytes) -> bool:
    """Send if a rider can take it now; False if none can (send() would block)."""
    try:
        push.send(data, zmq.NOBLOCK)
        return True
    except zmq.Again:
        return False


def count_consumers(monitor: zmq.Socket, connected: int, name: str, wait_ms: int = 0) -> int:
    """Say each rider that connected since the last look; return how many so far."""
    while monitor.poll(wait_ms):  # a timeout, not recv(): Ctrl-C must get through
        monitor.recv_multipart()
        connected += 1
        wait_ms = 0
        print(f"{name}: consumer connected ({connected} so far)", flush=True)
    return connected


MENUS = {
    "Pizza Roma": [("Margherita", 8.50), ("Diavola", 10.00), ("Tiramisu", 5.50)],
    "Sushi Go": [("Salmon nigiri", 6.00), ("California roll", 7.50), ("Miso soup", 3.00)],
    "Taco Loco": [("Carnitas taco", 3.50), ("Burrito", 9.00), ("Horchata", 2.50)],
    "Curry House": [("Chicken korma", 11.00), ("Dal", 7.00), ("Naan", 2.00)],
    "Green Bowl": [("Falafel bowl", 9.50), ("Poke bowl", 12.00), ("Lemonade", 3.00)],
}
CUSTOMERS = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"]
STREETS = ["Elm St", "Oak Ave", "Pine Rd", "Maple Ln", "Cedar Ct"]


def make_orders(name: str, seed: int | None, count: int = 0) -> Iterator[dict]:
    """`count` orders (0: endless), the same ones for the same seed."""
    rng = random.Random(seed)
    seq = 0
    while not count or seq < count:
        seq += 1
        restaurant = rng.choice(list(MENUS))
        picks = [(item, rng.randint(1, 2), price) for item, price in rng.sample(MENUS[restaurant], rng.randint(1, 3))]
        yield {
            "order_id": f"{name}-{seq:06d}",
            "producer": name,
            "restaurant": restaurant,
            "items": [{"name": item, "qty": qty, "price": price} for item, qty, price in picks],
            "total": round(sum(qty * price for _, qty, price in picks), 2),
            "customer": rng.choice(CUSTOMERS),
            "address": f"{rng.randint(1, 99)} {rng.choice(STREETS)}",
            "delivery_s": round(rng.uniform(0.2, 1.0), 3),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description="Push delivery orders to riders (ZeroMQ PUSH).")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5557", help="endpoint to bind (%(default)s)")
    parser.add_argument("--name", default="p1", help="producer name, the prefix of its order ids (%(default)s)")
    parser.add_argument("--orders", type=int, default=0, help="orders to send; 0 = until Ctrl-C (%(default)s)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between orders (%(default)s)")
    parser.add_argument("--wait-consumers", type=int, default=0, metavar="K", help="wait for K riders first")
    parser.add_argument("--seed", type=int, help="the same seed makes the same orders")
    args = parser.parse_args()
    if not all(0 <= value < float("inf") for value in (args.orders, args.interval, args.wait_consumers)):
        parser.error("--orders, --interval and --wait-consumers take a number >= 0")
    try:
        produce(args.bind, args.name, args.orders, args.interval, args.wait_consumers, args.seed)
    except zmq.ZMQError as exc:
        busy = exc.errno == zmq.EADDRINUSE
        hint = (
            "another program has that port: pick another, such as tcp://127.0.0.1:5558"
            if busy
            else "expected tcp://IP:PORT"
        )
        sys.exit(f"{args.name}: cannot bind {args.bind}: {zmq.strerror(exc.errno or 0)} ({hint})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
