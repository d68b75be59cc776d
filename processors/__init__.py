"""Processors: Python functions registered in code per queue and type, and the built-in http processor."""
