"""A key's restrictions form: its scopes, allowed IPs and shadow mode, changed after it was
made (the same command as the API's PATCH /v1/api-keys/{key_id})."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.di import Provide
from litestar.response import Redirect

from aitbc_api.dashboard.access import page, signed_in
from aitbc_api.dashboard.messages import explain
from aitbc_api.dashboard.owner import Owner
from aitbc_api.dashboard.restrictions import (
    SCOPE_FIELD,
    InvalidRestriction,
    form_of_key,
    from_form,
    scope_choices,
)
from aitbc_api.dashboard.web import BASE, form_of, redirect
from aitbc_api.owners.views import ApiKey
from aitbc_api.types import Req
from aitbc_contracts.messages import Code
from aitbc_gate.errors import ApiError


def _form_page(
    owner: Owner, key: ApiKey, form: dict[str, str], status: int = 200, **error: str
) -> Response[str]:
    return page(
        owner,
        "restrict.html",
        status,
        title=f"Restrictions of {key.name}",
        nav="keys",
        key=key,
        form={"allowed_ips": ""} | form,  # a posted form may lack a field the page shows
        scope_choices=scope_choices(key.scopes),
        scope_field=SCOPE_FIELD,
        **error,
    )


class KeyRestrictionPages(Controller):
    path = "/keys/{key_id:str}/restrict"
    include_in_schema = False
    dependencies = {"owner": Provide(signed_in)}

    @get("/")
    async def form(self, owner: Owner, key_id: str) -> Response[str]:
        key = await owner.get_key(key_id)
        return _form_page(owner, key, form_of_key(key.scopes, key.allowed_ips, key.shadow))

    @post("/")
    async def restrict(self, request: Req, owner: Owner, key_id: str) -> Response[str] | Redirect:
        fields = await form_of(request)
        key = await owner.get_key(key_id)
        try:
            scopes, allowed_ips, shadow = from_form(fields, scope_choices(key.scopes))
            restricted = await owner.restrict_key(key_id, scopes, allowed_ips, shadow)
        except InvalidRestriction as invalid:
            return _form_page(owner, key, fields, 400, error=str(invalid))
        except ApiError as error:
            if error.status >= 500 or error.code in (Code.RATE_LIMIT_EXCEEDED, Code.NOT_FOUND):
                raise
            sentence, detail = explain(error)
            return _form_page(
                owner, key, fields, error.status, error=sentence, detail=detail, code=error.code
            )
        await owner.tell(
            f"Key “{restricted.name}” ({restricted.key_id}) has new restrictions: they hold for "
            "its next request."
        )
        return redirect(f"{BASE}/keys")
