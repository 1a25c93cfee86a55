"""Who is signed in: the session from the cookie, re-checked and counted on every request.

Each request passes the same checks as an API call with the master key: the key is looked up
by its hash in the edge's auth cache (kept true by the key event stream), so a revoked,
expired or regenerated master key ends the session at once, and the request counts against
the plan like the API call it stands for. A form post must also carry the session's CSRF
token, and must not come from another site.
"""

from __future__ import annotations

from dataclasses import replace

from litestar import Response

from aitbc_api.dashboard.owner import Owner
from aitbc_api.dashboard.sessions import SessionStore
from aitbc_api.dashboard.web import (
    CSRF_FIELD,
    FORGED,
    OWNER_OF_REQUEST,
    SESSION_COOKIE,
    DashboardError,
    SignedOut,
    check_token,
    form_of,
    refuse_cross_site,
    render_with,
)
from aitbc_api.owners.key_manager import OwnerServices
from aitbc_api.types import Req
from aitbc_gate.admission import limit, owning
from aitbc_gate.auth import Authenticator
from aitbc_gate.errors import ApiError

NOT_SIGNED_IN = (
    "You are not signed in (or your session has ended), so nothing was changed. "
    "Sign in and try again."
)


async def signed_in(
    request: Req,
    request_id: str,
    sessions: SessionStore,
    authenticator: Authenticator,
    owner_services: OwnerServices,
) -> Owner:
    """Litestar dependency of every page behind sign-in."""
    session = await sessions.get(request.cookies.get(SESSION_COOKIE))
    if request.method != "GET":
        refuse_cross_site(request)
        if session is None:
            raise DashboardError(
                403, NOT_SIGNED_IN if SESSION_COOKIE in request.cookies else FORGED
            )
        check_token(session.csrf_token, (await form_of(request)).get(CSRF_FIELD, ""))
    elif session is None:
        raise SignedOut("expired" if SESSION_COOKIE in request.cookies else "")
    try:
        principal = owning(await authenticator.authenticate_hash(session.key_hash))
    except ApiError as error:
        # Revoked, expired or regenerated (or replaced and in its grace period, which manages
        # nothing): the session ends with it.
        if error.status in (401, 403):
            await sessions.end(session)
            raise SignedOut(error.code) from None
        raise
    if (principal.account_id, principal.key_id) != (session.account_id, session.key_id):
        await sessions.end(session)  # cannot happen unless the keys service is confused: be safe
        raise SignedOut("expired")
    owner = Owner(owner_services, principal, request_id, session, sessions)
    request.scope[OWNER_OF_REQUEST] = owner  # type: ignore[literal-required]  # for error pages
    await limit(request.scope, principal)
    notice = session.notice  # shown once: on the page this request renders
    if notice:
        session.notice = ""
        await sessions.save(session)
    return replace(owner, notice=notice)


def page(owner: Owner, template: str, status: int = 200, **context: object) -> Response[str]:
    """A page for a signed-in owner: the header's account and sign-out form, and any notice."""
    return render_with(template, {**owner_context(owner), **context}, status)


def owner_context(owner: Owner) -> dict[str, object]:
    """What the header shows of a signed-in owner: the account, and the sign-out form."""
    return {"owner": owner, "csrf": owner.session.csrf_token, "notice": owner.notice}
