"""
Benchmarks and statistical checks of capplan's models (run as ``python -m bench.<name>``).
"""
