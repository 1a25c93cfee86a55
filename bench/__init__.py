"""Benchmarks of issue 5: `just bench` (python -m bench) measures the edge against its ceiling
and against the stack a user would build instead. See bench/README.md."""
