"""
What capplan gives monitoring: Prometheus alerting rules from a plan (``rules``), metrics for
node_exporter's textfile collector (``metrics``), and the promtool check (``check``).
"""
