"""`python -m tests.chaos [NAME...]`: run the fault scenarios (all, or those named), print the
table, and exit non-zero when a promise was broken."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tests.chaos.report import Result, table
from tests.chaos.scenarios import CLUSTER_SCENARIOS, SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    names = [*SCENARIOS, *CLUSTER_SCENARIOS]
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(names))
    parser.add_argument("--keep", action="store_true", help="keep the systems' folders and logs")
    args = parser.parse_args(argv)
    scenarios = SCENARIOS | CLUSTER_SCENARIOS
    unknown = set(args.names) - set(scenarios)
    if unknown:
        parser.error(f"no such scenario: {', '.join(sorted(unknown))}")
    results = []
    root = Path(tempfile.mkdtemp(prefix="aitbc-chaos-"))
    for name in args.names or names:
        started = time.monotonic()
        print(f"{name}...", file=sys.stderr, flush=True)
        try:
            result = scenarios[name](root)
        except Exception:
            result = Result(name, violations=[traceback.format_exc(limit=3).strip()])
        print(f"{name}: {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        results.append(result)
    print(table(results))
    if args.keep:
        print(f"\nlogs: {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
