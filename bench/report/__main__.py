"""`python -m bench.report [quick]`: rewrite bench/results/latest.md (or quick.md) from its
.json."""

import json
import sys

from bench.report.markdown import RESULTS, markdown
from bench.report.targets import table

name = "quick" if sys.argv[1:] == ["quick"] else "latest"
results = json.loads((RESULTS / f"{name}.json").read_text())
(RESULTS / f"{name}.md").write_text(markdown(results, quick=name == "quick"))
print(table(results))
