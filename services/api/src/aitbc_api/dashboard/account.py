"""Pages behind sign-in: keys (list, create, revoke, regenerate), a key's history, usage (its
restrictions form is aitbc_api.dashboard.key_restrictions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Controller, Response, get, post
from litestar.di import Provide
from litestar.response import Redirect

from aitbc_api.dashboard.access import page, signed_in
from aitbc_api.dashboard.charts import minute_chart
from aitbc_api.dashboard.messages import explain
from aitbc_api.dashboard.owner import Owner
from aitbc_api.dashboard.restrictions import (
    DETAIL_NAMES,
    SCOPE_CHOICES,
    SCOPE_FIELD,
    InvalidRestriction,
    from_form,
    shown,
)
from aitbc_api.dashboard.web import BASE, form_of, redirect
from aitbc_api.owners.views import ApiKey, ApiKeyWithSecret, KeyEvent
from aitbc_api.types import Req
from aitbc_contracts.messages import Code
from aitbc_gate.errors import ApiError

NAME_MAX = 100
RATE_LIMIT_MAX = 1_000_000
REASON_MAX = 500
EXPIRY_CHOICES = [
    ("", "Never"),
    ("1", "In 1 day"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In 1 year"),
]
GRACE_CHOICES = [
    ("0", "No time: it stops working now"),
    ("300", "5 minutes"),
    ("3600", "1 hour"),
    ("86400", "1 day"),
    ("604800", "7 days (the longest)"),
]
_GRACE = {int(seconds): label for seconds, label in GRACE_CHOICES}

# How each event of a key's audit trail reads, and who did it.
_WHAT = {
    "key.created.v1": "Created",
    "key.revoked.v1": "Revoked",
    "key.regenerated.v1": "Secret regenerated",
    "key.restricted.v1": "Restrictions changed",
    "account.created.v1": "Account created",
    "account.plan_changed.v1": "Plan changed",
}
_DETAIL_NAMES = {
    "name": "Name",
    "kind": "Kind",
    "hint": "Key starts with",
    "expires_at": "Expires",
    "rate_limit": "Own limit a minute",
    "reason": "Reason",
    "previous_valid_until": "Old secret worked until",
    **DETAIL_NAMES,
}


class _Invalid(Exception):
    """A form field a person got wrong; shown beside the form."""


def _create_fields(fields: dict[str, str]) -> tuple[str, datetime | None, int | None]:
    name = fields.get("name", "")
    if not 1 <= len(name) <= NAME_MAX:
        raise _Invalid(f"Give the key a name of 1 to {NAME_MAX} characters.")
    days = fields.get("expires_in_days", "")
    if days not in dict(EXPIRY_CHOICES):
        raise _Invalid("Choose when the key expires from the list.")
    expires_at = datetime.now(UTC) + timedelta(days=int(days)) if days else None
    limit = fields.get("rate_limit", "")
    if not limit:
        return name, expires_at, None
    if not limit.isdecimal() or not 1 <= int(limit) <= RATE_LIMIT_MAX:  # not isdigit: "²"
        raise _Invalid(f"The key's own limit must be a whole number from 1 to {RATE_LIMIT_MAX}.")
    return name, expires_at, int(limit)


def _by(owner: Owner, actor: str) -> str:
    if actor == owner.session.key_id:
        return f"Your master key ({actor})"
    if actor == "operator":
        return "An operator (aitbc command line)"
    if actor == "signup":
        return "Sign-up"
    return actor or "unknown"


def _detail(name: str, value: Any) -> str:
    if value is None or value == "":
        return "none" if name != "expires_at" else "never"
    if name in DETAIL_NAMES:
        return shown(value) or str(value)
    if isinstance(value, str) and name in {"expires_at", "previous_valid_until"}:
        try:
            return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        except ValueError:
            return value
    return f"{value}…" if name == "hint" else str(value)


def _event_rows(owner: Owner, events: list[KeyEvent]) -> list[dict[str, Any]]:
    return [
        {
            "type": event.type,
            "what": _WHAT.get(event.type, event.type),
            "occurred_at": event.occurred_at,
            "by": _by(owner, event.actor),
            "request_id": event.request_id,
            "details": [
                (_DETAIL_NAMES.get(name, name), _detail(name, value))
                for name, value in event.details.items()
                if not (name == "reason" and not value)
            ],
        }
        for event in events
    ]


def _secret_page(
    owner: Owner, made: ApiKeyWithSecret, heading: str, advice: str, status: int = 200
) -> Response[str]:
    facts = [
        ("Name", made.name),
        ("Expires", made.expires_at),
        ("Scopes", ", ".join(made.scopes) or None),
        ("Allowed IPs", ", ".join(made.allowed_ips) or None),
        ("Shadow mode", "on" if made.shadow else None),
    ]
    return page(
        owner,
        "secret.html",
        status,
        title="Your new key",
        nav="keys",
        heading=heading,
        label="API key" if made.kind != "master" else "Master key",
        secret=made.key,
        key_id=made.key_id,
        advice=advice,
        facts=[
            (name, value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else value)
            for name, value in facts
            if value is not None
        ],
        next_url=f"{BASE}/keys",
        next_label="I have saved it: back to my keys",
    )


class AccountPages(Controller):
    path = "/"
    include_in_schema = False
    dependencies = {"owner": Provide(signed_in)}

    async def _keys_page(
        self,
        owner: Owner,
        status: int = 200,
        form: dict[str, str] | None = None,
        error: str = "",
        detail: str = "",
        code: str = "",
    ) -> Response[str]:
        form = {"name": "", "expires_in_days": "", "rate_limit": "", "allowed_ips": ""} | (
            form or {}
        )
        return page(
            owner,
            "keys.html",
            status,
            title="API keys",
            nav="keys",
            keys=await owner.list_keys(),
            form=form,
            expiry_choices=EXPIRY_CHOICES,
            scope_choices=SCOPE_CHOICES,
            scope_field=SCOPE_FIELD,
            error=error,
            detail=detail,
            code=code,
        )

    @get("/keys")
    async def keys(self, owner: Owner) -> Response[str]:
        return await self._keys_page(owner)

    @post("/keys", status_code=201)
    async def create(self, request: Req, owner: Owner) -> Response[str]:
        fields = await form_of(request)
        try:
            name, expires_at, rate_limit = _create_fields(fields)
            made = await owner.create_key(name, expires_at, rate_limit, from_form(fields))
        except (_Invalid, InvalidRestriction) as invalid:
            return await self._keys_page(owner, 400, fields, str(invalid))
        except ApiError as error:
            if error.status >= 500 or error.code == Code.RATE_LIMIT_EXCEEDED:
                raise
            sentence, detail = explain(error)
            return await self._keys_page(owner, error.status, fields, sentence, detail, error.code)
        return _secret_page(
            owner,
            made,
            f"Your new key “{made.name}”",
            "Send it in the X-API-Key header. If it is lost, regenerate it.",
            201,
        )

    @get("/keys/{key_id:str}/revoke")
    async def revoke_form(self, owner: Owner, key_id: str) -> Response[str]:
        key = await owner.get_key(key_id)
        return page(owner, "revoke.html", title=f"Revoke {key.name}", nav="keys", key=key)

    @post("/keys/{key_id:str}/revoke")
    async def revoke(self, request: Req, owner: Owner, key_id: str) -> Redirect:
        reason = (await form_of(request)).get("reason", "")[:REASON_MAX]
        revoked: ApiKey = await owner.revoke_key(key_id, reason)
        await owner.tell(
            f"Key “{revoked.name}” ({revoked.key_id}) is revoked: every request with it is "
            "refused from now on."
        )
        return redirect(f"{BASE}/keys")

    @get("/keys/{key_id:str}/regenerate")
    async def regenerate_form(self, owner: Owner, key_id: str) -> Response[str]:
        key = await owner.get_key(key_id)
        return page(
            owner,
            "regenerate.html",
            title=f"Regenerate {key.name}",
            nav="keys",
            key=key,
            grace_choices=GRACE_CHOICES,
        )

    @post("/keys/{key_id:str}/regenerate")
    async def regenerate(self, request: Req, owner: Owner, key_id: str) -> Response[str]:
        grace = (await form_of(request)).get("grace_period_seconds", "0") or "0"
        if not grace.isdecimal() or int(grace) not in _GRACE:
            raise ApiError(400, Code.VALIDATION_ERROR, "choose a grace period from the list")
        made = await owner.regenerate_key(key_id, int(grace))
        if int(grace):
            advice = f"The old secret keeps working for {_GRACE[int(grace)]}, then stops."
        else:
            advice = "The old secret has stopped working."
        return _secret_page(owner, made, f"New secret for “{made.name}”", advice)

    @get("/keys/{key_id:str}/events")
    async def events(self, owner: Owner, key_id: str) -> Response[str]:
        events = await owner.key_events(key_id)
        created = next((e for e in events if e.type == "key.created.v1"), None)
        return page(
            owner,
            "events.html",
            title="Key history",
            nav="keys",
            key_id=key_id,
            name=created.details.get("name", "") if created else "",
            events=_event_rows(owner, events),
        )

    @get("/usage")
    async def usage(self, owner: Owner, key_id: str = "") -> Response[str]:
        key = await owner.get_key(key_id) if key_id else None
        keys = await owner.list_keys()
        now = datetime.now(UTC)
        day_start = datetime.fromtimestamp(int(now.timestamp()) // 60 * 60 - 1439 * 60, UTC)
        minutes = await owner.usage(day_start, now + timedelta(seconds=1), key_id or None)
        limit = owner.plan_limit
        if (
            key is not None
            and key.rate_limit is not None
            and (limit is None or key.rate_limit < limit)
        ):
            limit = key.rate_limit
        return page(
            owner,
            "usage.html",
            title="Usage",
            nav="usage",
            key=key,
            keys=keys,
            limit=limit,
            hour=minute_chart(minutes, now, 60, "Last hour", limit),
            day=minute_chart(minutes, now, 1440, "Last 24 hours", limit),
        )
