"""A key's restrictions in the dashboard: the scopes (a checkbox for each well-known scope, and
for any other the key holds), allowed IPs (text) and shadow mode of the create form and of a
key's restrictions form, read and checked by the one rule (aitbc_contracts.restrictions), and
how the pages name them."""

from __future__ import annotations

from collections.abc import Sequence

from aitbc_api.dashboard.web import MAX_FIELD
from aitbc_contracts import restrictions

SCOPE_FIELD = "scope:"  # a checkbox per scope: `scope:jobs:read`
SCOPE_CHOICES = [
    (restrictions.JOBS_READ, "Read jobs"),
    (restrictions.JOBS_WRITE, "Create and cancel jobs"),
    (restrictions.USAGE_READ, "Read usage"),
    (restrictions.KEYS_MANAGE, "Manage keys (within these scopes)"),
]
DETAIL_NAMES = {"scopes": "Scopes", "allowed_ips": "Allowed IPs", "shadow": "Shadow mode"}
Restrictions = tuple[tuple[str, ...], tuple[str, ...], bool]


class InvalidRestriction(ValueError):
    """A restriction a person got wrong; its message is shown beside the form."""


def scope_choices(held: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The scopes to offer: the well-known ones, then those of a deployment's own rules that
    the key holds (set through the API), so that saving its form does not drop them."""
    known = dict(SCOPE_CHOICES)
    return SCOPE_CHOICES + [(scope, "") for scope in held if scope not in known]


def form_of_key(scopes: Sequence[str], allowed_ips: Sequence[str], shadow: bool) -> dict[str, str]:
    """A key's restrictions as its form's fields, ticked and filled in."""
    fields = {f"{SCOPE_FIELD}{scope}": "on" for scope in scopes}
    return fields | {"allowed_ips": ", ".join(allowed_ips), "shadow": "on" if shadow else ""}


def from_form(
    fields: dict[str, str], choices: Sequence[tuple[str, str]] = SCOPE_CHOICES
) -> Restrictions:
    """The form's scopes (none ticked: every scope), allowed IPs (separated by commas, spaces
    or new lines; none: anywhere) and shadow mode. Only the `choices` offered are read."""
    known = dict(choices)
    ticked = [
        name[len(SCOPE_FIELD) :]
        for name, value in fields.items()
        if name.startswith(SCOPE_FIELD) and value and name[len(SCOPE_FIELD) :] in known
    ]
    text = fields.get("allowed_ips", "")
    if len(text) >= MAX_FIELD:  # cut short by the form's reader: its last network may be too
        raise InvalidRestriction(f"List at most {restrictions.MAX_NETWORKS} allowed networks.")
    listed = text.replace(",", " ").split()
    try:
        return (
            restrictions.scopes(ticked),
            restrictions.allowed_ips(listed),
            fields.get("shadow", "") != "",
        )
    except restrictions.InvalidRestriction as exc:
        raise InvalidRestriction(f"{exc}.") from None


def shown(value: object) -> str | None:
    """A restriction's value in a key's history (None: not one to show this way)."""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return None
