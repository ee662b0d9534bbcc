"""
Pure performance models (queueing, scalability): plain numbers and arrays in, plain results out.

Import the submodules directly, e.g. ``from capplan.models.queueing import Station``.
"""
