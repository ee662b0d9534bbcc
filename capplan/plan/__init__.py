"""
Capacity planning (``capplan plan``): demand forecasts and when the pool runs out.

Import the submodules directly, e.g. ``from capplan.plan.forecast import history_forecast``.
"""
