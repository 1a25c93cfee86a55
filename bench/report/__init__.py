"""The results as Markdown (bench/results/latest.md) and as the table printed at the end.

`python -m bench.report [quick]` rewrites the .md from its .json."""

from bench.report.markdown import markdown
from bench.report.targets import missed, table

__all__ = ["markdown", "missed", "table"]
