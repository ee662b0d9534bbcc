"""
The lab: a pool of real, unequal nodes on loopback and an open-loop load generator.

* :mod:`bench.lab.pool` — the pool YAML (nodes on 127.0.0.0/8, slots, service times) and its
  loader; ``bench/lab/pools/`` ships ``default.yaml`` and ``large.yaml``.
* :mod:`bench.lab.node` — every node of a pool served by one asyncio process, each an M/G/c
  station (``slots`` workers, a FIFO queue, a seeded random service time served by a timer) that
  writes an nginx access log capplan reads (``python -m bench.lab.node``).
* :mod:`bench.lab.loadgen` — open-loop Poisson arrivals at a fixed rate for a fixed time, latency
  counted from each request's intended send time (``python -m bench.lab.loadgen``).
* :mod:`bench.lab.calibrate` — how fast one generator process holds its rate on this machine, and
  what the node process and the generator cost in CPU (``python -m bench.lab.calibrate``).

Everything binds and sends on the loopback range only: the pool loader and the generator refuse
any other address.
"""
