"""The AsyncAPI 3.0 document of every subject, stream and message, built from these contracts.

`python -m aitbc_contracts.asyncapi docs/asyncapi.json` writes it (`just docs`); a test fails
when the committed file no longer matches the code. Schemas come from msgspec, so they are
the very types the services decode with. What the document lists (messages, channels,
operations) is in aitbc_contracts.asyncapi_catalog and asyncapi_channels; this module turns
it into AsyncAPI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from aitbc_contracts.asyncapi_catalog import MESSAGES, OPERATIONS
from aitbc_contracts.asyncapi_channels import CHANNELS

REF = "#/components/schemas/{name}"

VERBS = {"receive": "answered by", "send": "published by"}


def _date_times(types: list[Any]) -> dict[str, dict[str, str]]:
    """Struct name -> field -> where its datetimes are ("" itself, or "additionalProperties"
    or "items"): msgspec's schemas call datetimes plain strings."""
    found: dict[str, dict[str, str]] = {}

    def where(info: mi.Type) -> str | None:
        inner = info.types if isinstance(info, mi.UnionType) else (info,)
        for option in inner:
            if isinstance(option, mi.DateTimeType):
                return ""
            if isinstance(option, mi.DictType) and isinstance(option.value_type, mi.DateTimeType):
                return "additionalProperties"
            if isinstance(option, mi.ListType) and isinstance(option.item_type, mi.DateTimeType):
                return "items"
        return None

    def visit(info: mi.Type) -> None:
        if isinstance(info, mi.StructType) and info.cls.__name__ not in found:
            fields = found[info.cls.__name__] = {}
            for field in info.fields:
                place = where(field.type)
                if place is not None:
                    fields[field.encode_name] = place
                visit(field.type)
        elif isinstance(info, mi.UnionType):
            for member in info.types:
                visit(member)
        elif isinstance(info, mi.ListType):
            visit(info.item_type)
        elif isinstance(info, mi.DictType):
            visit(info.value_type)

    for info in mi.multi_type_info(types):
        visit(info)
    return found


def _asyncapi_schemas(schemas: dict[str, Any], types: list[Any]) -> dict[str, Any]:
    """msgspec's JSON Schema in AsyncAPI's dialect: date-time formats, string discriminators."""
    for name, fields in _date_times(types).items():
        for field, place in fields.items():
            prop = schemas[name]["properties"][field]
            for option in prop.get("anyOf", [prop]):
                target = option.get(place) if place else option
                if isinstance(target, dict) and target.get("type") == "string":
                    target["format"] = "date-time"

    def discriminate(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("discriminator"), dict):
                node["discriminator"] = node["discriminator"]["propertyName"]
            for value in node.values():
                discriminate(value)
        elif isinstance(node, list):
            for value in node:
                discriminate(value)

    discriminate(schemas)
    return schemas


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/{kind}/{name}"}


def document() -> dict[str, Any]:
    types = [payload for payload, _, _ in MESSAGES.values()]
    payloads, schemas = msgspec.json.schema_components(types, ref_template=REF)
    payloads = _asyncapi_schemas({"payloads": list(payloads)}, [])["payloads"]
    schemas = _asyncapi_schemas(dict(schemas), types)
    messages: dict[str, Any] = {}
    for (name, (_, summary, headers)), payload in zip(MESSAGES.items(), payloads, strict=True):
        messages[name] = {"name": name, "summary": summary, "payload": payload}
        if headers is not None:
            messages[name]["headers"] = headers
    channels: dict[str, Any] = {}
    for name, (address, description, parameters, names, jetstream) in CHANNELS.items():
        channel: dict[str, Any] = {"address": address, "description": description}
        channel["messages"] = {n: _ref("components/messages", n) for n in names}
        if parameters:
            channel["parameters"] = parameters
        if jetstream is not None:
            channel["x-jetstream"] = jetstream
        channels[name] = channel
    operations: dict[str, Any] = {}
    for name, (action, channel_name, reply, queue, owner) in OPERATIONS.items():
        operation: dict[str, Any] = {
            "action": action,
            "channel": _ref("channels", channel_name),
            "summary": f"{VERBS[action]} the {owner}",
        }
        if reply is not None:
            operation["reply"] = {"channel": _ref("channels", reply)}
        if queue is not None:
            operation["bindings"] = {"nats": {"queue": queue}}
        operations[name] = operation
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "AITBC API-key layer: the NATS contracts",
            "version": "1.0.0",
            "description": "Every subject, stream and message of the keys and usage services "
            "and the edge. Payloads are JSON (msgspec). Generated from aitbc_contracts.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:4322", "protocol": "nats", "description": "just up"}
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    target = Path((argv or sys.argv[1:] or ["docs/asyncapi.json"])[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())


if __name__ == "__main__":
    main()
