"""
The optimizer: the traffic split, integer weights and thresholds (pure functions).
"""
