"""
The report: latency-versus-load figures per node, the split before and after, the plan's cost.

``data`` turns fits and plans into figure data (pure), ``build`` makes the core calls
(``build_report``), ``figures`` draws with matplotlib, ``html`` writes the self-contained
page, ``textplot`` draws one node for the terminal, and ``command`` is ``capplan report``.
Nothing is imported here, so that registering the command costs the CLI nothing.
"""
