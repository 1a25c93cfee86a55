"""The committed AsyncAPI and OpenAPI documents match the code (`just docs` regenerates them)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from aitbc_api import openapi
from aitbc_contracts import asyncapi
from aitbc_contracts import asyncapi_catalog as catalog
from aitbc_contracts import subjects as s

DOCS = Path(__file__).parents[2] / "docs"


@pytest.mark.parametrize(
    ("name", "render"), [("asyncapi.json", asyncapi.render), ("openapi.json", openapi.render)]
)
def test_the_committed_document_matches_the_code(name: str, render: Callable[[], str]) -> None:
    committed = (DOCS / name).read_text()
    assert committed == render(), f"docs/{name} is stale: run `just docs` and commit it"


def test_every_subject_stream_queue_bucket_and_header_is_documented() -> None:
    document = json.loads(asyncapi.render())
    text = json.dumps(document)
    names = {name: value for name, value in vars(s).items() if name.isupper()}
    for name, value in names.items():
        if isinstance(value, str):
            assert value.rstrip(".>") in text, f"{name} = {value!r} is not in docs/asyncapi.json"
    partition = document["channels"]["usageDecide"]["parameters"]["partition"]
    assert len(partition["enum"]) == s.USAGE_PARTITIONS
    addresses = {c["address"] for c in document["channels"].values()}
    assert s.key_event_subject("{account_id}", "{stream_id}") in addresses
    assert s.usage_decide_subject(0).rsplit(".", 1)[0] + ".{partition}" in addresses


def properties(struct: type) -> dict[str, object]:
    """The JSON Schema properties of a msgspec Struct."""
    schema: dict[str, object] = msgspec.json.schema(struct)["$defs"][struct.__name__]["properties"]
    return schema


def test_the_usage_counters_schema_is_the_one_the_usage_service_writes() -> None:
    from aitbc_usage.snapshots import Snapshot

    assert properties(Snapshot) == properties(catalog.UsageCounters)


def test_the_dashboard_session_schema_is_the_one_the_edges_share() -> None:
    from aitbc_api.dashboard.sessions import Session

    assert properties(Session) == properties(catalog.DashboardSession)


def test_every_event_and_command_has_a_schema() -> None:
    from aitbc_contracts import messages as m
    from aitbc_contracts.events import AnyEvent

    schemas = asyncapi.document()["components"]["schemas"]
    for union in (AnyEvent, m.AnyCommand, m.Reply):
        for struct in union.__args__:  # type: ignore[attr-defined]
            assert struct.__name__ in schemas


def test_schemas_speak_asyncapis_dialect() -> None:
    document = asyncapi.document()
    created = document["components"]["schemas"]["KeyCreated"]["properties"]
    assert created["occurred_at"] == {"type": "string", "format": "date-time"}
    assert {"type": "string", "format": "date-time"} in created["expires_at"]["anyOf"]
    last_used = document["components"]["schemas"]["LastUsed"]["properties"]["keys"]
    assert last_used["additionalProperties"]["format"] == "date-time"
    assert document["components"]["messages"]["KeyEvent"]["payload"]["discriminator"] == "type"


def test_the_docs_page_needs_no_network_and_its_assets_are_served() -> None:
    """/schema names no other host: its script, style and icon come from the edge itself."""
    from litestar.testing import TestClient

    from aitbc_api.settings import Settings
    from tests.unit.edge_apps import without_bus

    app = without_bus(Settings())
    client = TestClient(app)  # not entered: no lifespan, so no NATS
    page = client.get("/schema")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert len(assets) == 4, assets  # the script, its preset, the style and the icon
    for asset in assets:
        assert asset.startswith("/schema/assets/")
        served = client.get(asset)
        assert served.status_code == 200 and len(served.content) > 1000, asset
    assert client.get("/schema/assets/swagger-editor.js").status_code == 404
    assert client.get("/schema/openapi.json").json() == openapi.document()
