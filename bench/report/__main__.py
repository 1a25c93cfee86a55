"""`python -m bench.report [quick|only]`: rewrite bench/results/latest.md (or quick.md, only.md)
from its .json."""

import json
import sys

from bench.report.markdown import RESULTS, markdown
from bench.report.targets import table

name = sys.argv[1] if sys.argv[1:] in (["quick"], ["only"]) else "latest"
results = json.loads((RESULTS / f"{name}.json").read_text())
(RESULTS / f"{name}.md").write_text(markdown(results, quick=results["config"]["quick"]))
print(table(results))
