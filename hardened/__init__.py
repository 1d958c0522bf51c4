"""The second read: the pipeline of the top-level producer.py, consumer.py and run.py,
hardened for the real world. Run it from the project's folder:

    python -m hardened.run          # as run.py, plus a live view, --timeline, --crash-consumer, --producers
    python -m hardened.producer     # as producer.py, plus heartbeats, CURVE, the monitor's lines and hints
    python -m hardened.consumer     # as consumer.py, plus the same

producer.py and consumer.py keep the first read's names (produce(), consume(),
report()) so that the two can be read side by side; make_orders() and parse_order()
are in orders.py, which both use.
What each module adds to the first read, and why:

- producer, consumer: the same lessons, with Ctrl-C as a flag at any moment (stopping),
  a line for every consumer that comes, goes or is refused (monitoring), and a flood
  shown as a summary a second (cli.Pacer)
- run: several producers, a live view, a timeline, a crash demo; the fork server where
  the platform has one (a third of spawn's start-up); its children stop by a pipe, not
  a signal, so a rider reports its last delivery before it goes
- orders: the wire format in one place: making an order, checking one that arrives
- monitoring: the socket monitor: who connected, who was refused, who is gone, when to
  redial: PUSH and PULL tell you none of it
- heartbeats: ZMTP heartbeats: a peer that vanished without a word (a phone out of
  coverage) is noticed in 1.5 s, not TCP's minutes
- stopping: Ctrl-C and SIGTERM as a flag checked between short waits, never an
  exception in the middle of a send; stopping run's children on every platform
- curve: CURVE: only riders whose keys the platform knows get orders, encrypted
- sink, report: run's results: when every order is in, or can no longer come, and the
  report (a byte per order: a million orders, a megabyte)
- liveview, timeline: run's live view on a terminal, and an SVG of who did what, when
- cli: endpoints and option errors as one line with the fix; output lines paced in a
  flood; a closed pipe ends a script quietly
"""

import sys

if sys.version_info < (3, 10):  # noqa: UP036 (the check is for older Pythons) Before any module uses 3.10's syntax: one line, not a traceback
    sys.exit(f"This project needs Python 3.10 or newer; this is Python {sys.version.split()[0]}.")
