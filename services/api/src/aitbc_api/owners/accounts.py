"""Sign-up: `POST /v1/accounts` makes a free account and shows its master key once."""

from __future__ import annotations

from litestar import post

from aitbc_api.errors import documented
from aitbc_api.owners.bodies import Account, MasterKey, SignUp
from aitbc_api.owners.key_manager import OwnerServices
from aitbc_api.types import Req
from aitbc_contracts.messages import Code
from aitbc_gate.proxies import client_address

TOO_MANY_SIGNUPS = (
    "Too many sign-ups from this address, or from everyone right now (TOO_MANY_SIGNUPS); "
    "see Retry-After",
    Code.TOO_MANY_SIGNUPS,
    "Too many sign-up attempts from this address; try again in 1800 seconds",
)


@post(
    "/v1/accounts",
    status_code=201,
    security=[{}],
    tags=["accounts"],
    summary="Sign up",
    operation_id="signUp",
    responses=documented(400, 429, 503, own={429: TOO_MANY_SIGNUPS}),
)
async def sign_up(
    request: Req, owner_services: OwnerServices, request_id: str, data: SignUp | None = None
) -> Account:
    """Creates an account on the free plan. The master key is in this response only. Sign-ups
    are budgeted per client address and for the whole service (429 TOO_MANY_SIGNUPS)."""
    name = (data.name if data else "").strip()
    client = client_address(request.scope)
    view, master_key = await owner_services.create_account(name, request_id, client)
    return Account(
        account_id=view.account_id,
        name=view.name,
        plan=view.plan,
        created_at=view.created_at,
        master_key=MasterKey(key_id=view.master_key_id, key=master_key),
    )
