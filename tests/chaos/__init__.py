"""Fault scenarios with load running: `python -m tests.chaos` (`just chaos`) prints the table."""
