"""Pages before sign-in: sign up (the master key shown once), sign in, sign out."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.response import Redirect

from aitbc_api.dashboard.messages import ENDED, SIGN_IN, explain
from aitbc_api.dashboard.sessions import SessionStore
from aitbc_api.dashboard.web import (
    BASE,
    CSRF_FIELD,
    FORM_COOKIE,
    SESSION_COOKIE,
    Cookies,
    check_token,
    form_of,
    redirect,
    refuse_cross_site,
    render,
)
from aitbc_api.owners.key_manager import OwnerServices
from aitbc_api.types import Req
from aitbc_contracts.keyformat import hash_key
from aitbc_gate.admission import owning
from aitbc_gate.auth import Authenticator
from aitbc_gate.errors import ApiError
from aitbc_gate.proxies import client_address
from aitbc_gate.throttle import AttemptBudget

NAME_MAX = 100


async def _checked_form(request: Req) -> dict[str, str]:
    """An anonymous form's fields, if it came from our own page (double-submit token)."""
    refuse_cross_site(request)
    fields = await form_of(request)
    check_token(request.cookies.get(FORM_COOKIE, ""), fields.get(CSRF_FIELD, ""))
    return fields


async def _end_current(request: Req, sessions: SessionStore) -> None:
    """A new sign-in replaces this browser's session: its old id is never reused."""
    current = await sessions.get(request.cookies.get(SESSION_COOKIE))
    if current is not None:
        await sessions.end(current)


class PublicPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/", name="dashboard")
    async def index(self, request: Req, sessions: SessionStore) -> Redirect:
        signed_in = await sessions.get(request.cookies.get(SESSION_COOKIE)) is not None
        return redirect(f"{BASE}/keys" if signed_in else f"{BASE}/sign-in")

    @get("/sign-up")
    async def sign_up_form(self, request: Req, jar: Cookies) -> Response[str]:
        token, cookies = jar.form_token(request)
        return render(
            "sign_up.html", cookies=cookies, title="Sign up", nav="sign-up", csrf=token, name=""
        )

    @post("/sign-up", status_code=201)
    async def sign_up(
        self,
        request: Req,
        request_id: str,
        owner_services: OwnerServices,
        sessions: SessionStore,
        jar: Cookies,
    ) -> Response[str]:
        fields = await _checked_form(request)
        name = fields.get("name", "")
        if len(name) > NAME_MAX:
            token, cookies = jar.form_token(request)
            return render(
                "sign_up.html",
                400,
                cookies,
                title="Sign up",
                nav="sign-up",
                csrf=token,
                name=name[:NAME_MAX],
                error=f"The account name can have at most {NAME_MAX} characters.",
            )
        client = client_address(request.scope)
        account, master_key = await owner_services.create_account(name, request_id, client)
        await _end_current(request, sessions)
        token, _session = await sessions.start(
            account.account_id, account.master_key_id, hash_key(master_key)
        )
        return render(
            "secret.html",
            201,
            [jar.make(request, SESSION_COOKIE, token)],
            title="Your master key",
            heading="Your account is ready: here is its master key",
            label="Master key",
            secret=master_key,
            key_id=account.master_key_id,
            advice=(
                "You need it to sign in here and to manage your keys with the API. "
                "If it is lost, an operator can give your account a new one."
            ),
            facts=[("Account", account.account_id), ("Plan", account.plan.capitalize())],
            next_url=f"{BASE}/keys",
            next_label="I have saved it: go to my keys",
            bare=True,
        )

    @get("/sign-in")
    async def sign_in_form(self, request: Req, jar: Cookies, reason: str = "") -> Response[str]:
        token, cookies = jar.form_token(request)
        return render(
            "sign_in.html",
            cookies=cookies,
            title="Sign in",
            nav="sign-in",
            csrf=token,
            notice=ENDED.get(reason, ""),
        )

    @post("/sign-in")
    async def sign_in(
        self,
        request: Req,
        authenticator: Authenticator,
        sessions: SessionStore,
        sign_ins: AttemptBudget,
        jar: Cookies,
    ) -> Response[str] | Redirect:
        fields = await _checked_form(request)
        client = client_address(request.scope)
        try:
            sign_ins.take(client)  # every attempt counts, right or wrong
            principal = owning(
                await authenticator.authenticate(fields.get("master_key", ""), client)
            )
        except ApiError as error:
            # The form comes back empty: the key typed is never written into a page.
            sentence, _ = explain(error, SIGN_IN)
            token, cookies = jar.form_token(request)
            return render(
                "sign_in.html",
                error.status,
                cookies,
                error.headers,
                title="Sign in",
                nav="sign-in",
                csrf=token,
                error=sentence,
                code=error.code,
            )
        await _end_current(request, sessions)
        token, _session = await sessions.start(
            principal.account_id, principal.key_id, hash_key(fields["master_key"])
        )
        return redirect(f"{BASE}/keys", [jar.make(request, SESSION_COOKIE, token)])

    @get("/sign-out")
    async def sign_out_form(self, request: Req, sessions: SessionStore) -> Response[str] | Redirect:
        """A link to sign out lands here: signing out itself is a form post (CSRF-safe)."""
        session = await sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return redirect(f"{BASE}/sign-in")
        return render("sign_out.html", title="Sign out", csrf=session.csrf_token, bare=True)

    @post("/sign-out")
    async def sign_out(self, request: Req, sessions: SessionStore, jar: Cookies) -> Redirect:
        refuse_cross_site(request)
        session = await sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is not None:  # no one else may sign this browser out: the token is needed
            check_token(session.csrf_token, (await form_of(request)).get(CSRF_FIELD, ""))
            await sessions.end(session)
        signed_out = jar.cleared(request, SESSION_COOKIE)
        return redirect(f"{BASE}/sign-in?reason=signed-out", [signed_out])
