"""The account itself, with its master key: `GET /v1/account` shows it, `PATCH /v1/account`
changes what its owner may change (whether the master key calls the forwarded routes)."""

from __future__ import annotations

from litestar import Controller, get, patch

from aitbc_api.errors import AUTHENTICATED, documented
from aitbc_api.owners.bodies import AccountChange, AccountInfo
from aitbc_api.owners.dependencies import master_dependencies
from aitbc_api.owners.key_manager import KeyManager
from aitbc_contracts.messages import AccountView


def _info(view: AccountView) -> AccountInfo:
    return AccountInfo(
        account_id=view.account_id,
        name=view.name,
        plan=view.plan,
        master_key_id=view.master_key_id,
        created_at=view.created_at,
        master_key_data_plane=view.master_key_data_plane,
    )


class AccountController(Controller):
    path = "/v1/account"
    tags = ["accounts"]
    dependencies = master_dependencies()

    @get(
        "/",
        summary="Show the account",
        operation_id="getAccount",
        responses=documented(*AUTHENTICATED),
    )
    async def show(self, keys: KeyManager) -> AccountInfo:
        return _info(await keys.account())

    @patch(
        "/",
        summary="Keep the master key to managing keys, or let it call the API",
        operation_id="updateAccount",
        responses=documented(*AUTHENTICATED),
    )
    async def change(self, keys: KeyManager, data: AccountChange) -> AccountInfo:
        """`master_key_data_plane: false`: the master key manages keys and is refused on every
        forwarded route (403 MASTER_KEY_MANAGEMENT_ONLY), so a leak of a client's key can
        never be a leak of the account's management key."""
        return _info(await keys.set_master_key_data_plane(data.master_key_data_plane))
