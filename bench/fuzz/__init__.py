"""
Fuzzing of capplan's parsers of outside text (see ``targets`` for the property).

    python -m bench.fuzz.atheris_parsers --target nginx -atheris_runs=100000 -max_total_time=60
"""
