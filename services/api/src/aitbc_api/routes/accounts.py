"""Sign-up: `POST /v1/accounts` makes a free account and shows its master key once."""

from __future__ import annotations

from litestar import post

from aitbc_api.clients import KeysClient
from aitbc_api.errors import documented
from aitbc_api.middleware import request_id_of
from aitbc_api.routes.schemas import Account, MasterKey, SignUp
from aitbc_api.types import Req
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.messages import AccountView, CreateAccount


@post(
    "/v1/accounts",
    status_code=201,
    security=[{}],
    tags=["accounts"],
    summary="Sign up",
    responses=documented(400, 503),
)
async def sign_up(request: Req, data: SignUp | None = None) -> Account:
    """Creates an account on the free plan. The master key is in this response only."""
    keys: KeysClient = request.app.state.keys_client
    master_key = generate_key()  # the plaintext never leaves this process but in the response
    view = await keys.command(
        CreateAccount(
            name=(data.name if data else "").strip(),
            plan="free",
            master_key_hash=hash_key(master_key),
            master_key_hint=hint(master_key),
            actor="signup",
            request_id=request_id_of(request.scope),
        )
    )
    assert isinstance(view, AccountView)
    return Account(
        account_id=view.account_id,
        name=view.name,
        plan=view.plan,
        created_at=view.created_at,
        master_key=MasterKey(key_id=view.master_key_id, key=master_key),
    )
