"""The second read: the same pipeline as the top-level producer.py, consumer.py and
run.py, hardened for the real world: heartbeats, CURVE, the socket monitor's lines and
hints, the live view, the timeline, the crash demo, several producers. Run it as
python -m hardened.run, python -m hardened.producer, python -m hardened.consumer.

Its modules, and what each adds:

- producer: the server: binds PUSH, sends seeded orders
- consumer: a rider: connects PULL, validates, delivers, reports
- run: everything on one machine: P producers, C riders, the sink and the report
- orders: the wire format: making an order, and checking one that arrives; the lines
  that say one was sent or delivered
- monitoring: the socket monitor: who is connected, who was refused, who is gone, when
  to redial
- heartbeats: ZMTP heartbeats: noticing a peer that vanished without a word
- stopping: Ctrl-C and SIGTERM as a flag; how run stops its children on every platform
- curve: CURVE keys: encryption and authentication
- sink: run's results sink: reading completion records until every order is in, or can
  no longer come
- report: run's accounting (which orders, who delivered them: a byte per order) and its
  report
- liveview: run's live view on a terminal, and its plain lines elsewhere
- timeline: run --timeline: an SVG of who delivered what, when
- cli: what the scripts share on the command line: endpoints, option types, output
  lines (paced in a flood)
"""
