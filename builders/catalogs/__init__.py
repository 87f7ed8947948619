"""Spectroscopic survey readers (one module per survey) and the compiler of the unified target list."""
