"""The edge's OpenAPI document, as Litestar generates it from the routes and their types.

`python -m aitbc_api.openapi docs/openapi.json` writes it (`just docs`); a test fails when the
committed file no longer matches the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from aitbc_api.app import create_app
from aitbc_api.settings import Settings


def document() -> dict[str, Any]:
    # Default settings: the document must not depend on the environment it is built in.
    schema = create_app(Settings()).openapi_schema.to_schema()
    # Examples hold our own structs (error bodies): plain JSON values from here on.
    document: dict[str, Any] = msgspec.to_builtins(schema)
    return document


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    target = Path((argv or sys.argv[1:] or ["docs/openapi.json"])[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())


if __name__ == "__main__":
    main()
