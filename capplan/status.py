"""
Program exit status codes: the one place they are defined (a DESIGN.md contract).
"""

from enum import IntEnum

__all__ = ["ExitStatus"]


class ExitStatus(IntEnum):
    """
    Program exit status code constants.
    """

    OK = 0
    FAILURE = 1  # runtime failure, or a checker (nginx, haproxy, ...) is missing
    BAD_INPUT = 2  # bad input or usage
    PARTIAL = 3  # partial result: some nodes failed
    DRIFT = 4  # drift found by --check
    INFEASIBLE = 5  # the SLO cannot be met at that load (or a queue is unstable)
