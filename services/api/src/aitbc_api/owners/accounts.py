"""Sign-up: `POST /v1/accounts` makes a free account and shows its master key once."""

from __future__ import annotations

from litestar import post

from aitbc_api.errors import documented
from aitbc_api.owners.bodies import Account, MasterKey, SignUp
from aitbc_api.owners.key_manager import OwnerServices


@post(
    "/v1/accounts",
    status_code=201,
    security=[{}],
    tags=["accounts"],
    summary="Sign up",
    operation_id="signUp",
    responses=documented(400, 503),
)
async def sign_up(
    owner_services: OwnerServices, request_id: str, data: SignUp | None = None
) -> Account:
    """Creates an account on the free plan. The master key is in this response only."""
    name = (data.name if data else "").strip()
    view, master_key = await owner_services.create_account(name, request_id)
    return Account(
        account_id=view.account_id,
        name=view.name,
        plan=view.plan,
        created_at=view.created_at,
        master_key=MasterKey(key_id=view.master_key_id, key=master_key),
    )
