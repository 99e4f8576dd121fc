"""Benchmarks of the whole pipeline and of a bare faust pass-through, its reference ceiling."""
