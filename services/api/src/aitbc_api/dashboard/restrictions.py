"""A key's restrictions in the dashboard: the create form's scopes (a checkbox for each
well-known scope), allowed IPs (text) and shadow mode, read and checked by the one rule
(aitbc_contracts.restrictions), and how the pages name them."""

from __future__ import annotations

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


def from_form(fields: dict[str, str]) -> Restrictions:
    """The form's scopes (none ticked: every scope), allowed IPs (separated by commas, spaces
    or new lines; none: anywhere) and shadow mode."""
    known = dict(SCOPE_CHOICES)
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
