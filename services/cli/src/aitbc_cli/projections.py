"""`aitbc projections rebuild`: the keys service drops its read models and refolds the log.

The service does it in one write transaction: key checks keep reading the old rows until the
new ones commit, and writers wait their turn, so nothing is admitted or refused wrongly
meanwhile. A long log may need a longer `--timeout`.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from aitbc_cli.bus import Send
from aitbc_cli.output import as_data, print_json
from aitbc_cli.replies import expect
from aitbc_contracts.messages import OPERATOR, RebuildProjections, Rebuilt


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    projections = commands.add_parser("projections", help="rebuild the keys read models")
    sub = projections.add_subparsers(dest="action", metavar="ACTION", required=True)
    rebuild = sub.add_parser(
        "rebuild", parents=[common], help="drop every keys read model and refold it from events"
    )
    rebuild.set_defaults(handler=rebuild_projections)


async def rebuild_projections(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    rebuilt = expect(await send(RebuildProjections(actor=OPERATOR)), Rebuilt)
    if args.json:
        print_json(as_data(rebuilt), out)
    else:
        out.write(f"rebuilt the keys read models from {rebuilt.events} events\n")
    return 0
