"""
Fuzzing of every parser of outside text (hypothesis here, atheris in ``bench/fuzz``).
"""
