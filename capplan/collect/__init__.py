"""
Agentless collection: node stats and access-log windows, over SSH or on this machine.

The parsers (``probes``, ``logs``, ``haproxy``) are pure functions of text; ``ssh`` and
``run`` are the edges that reach the nodes and the store.
"""
