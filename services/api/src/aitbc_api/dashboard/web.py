"""Pages and forms: rendering (Jinja, autoescaped), cookies, CSRF checks, and the headers every
dashboard response carries."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from jinja2 import Environment, PackageLoader, StrictUndefined
from litestar import MediaType, Response
from litestar.datastructures import Cookie
from litestar.response import Redirect

from aitbc_api.types import Req

BASE = "/dashboard"
SESSION_COOKIE = "aitbc_session"
FORM_COOKIE = "aitbc_form"  # CSRF token of the sign-up and sign-in forms: no session exists yet
CSRF_FIELD = "csrf_token"
MAX_FIELD = 2000  # characters: no field of ours is longer (32 IPv6 networks, the longest)
OWNER_OF_REQUEST = "aitbc.dashboard.owner"  # the scope's key: who this request is signed in as

# Every dashboard response: never cached (one-time keys are shown), never framed, no inline
# script or style (so injected markup could not run), no Referer sent to other sites.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form posts say Origin: null
    "X-Content-Type-Options": "nosniff",
}


class DashboardError(Exception):
    """An answer shown to the person as a page: a status and a plain sentence."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class SignedOut(Exception):
    """No live session: the person is sent to sign in, told why (a key of `ENDED`)."""

    def __init__(self, reason: str = "expired") -> None:
        super().__init__(reason)
        self.reason = reason


def _when(value: datetime | None, empty: str = "never") -> str:
    if value is None:
        return empty
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


_env = Environment(
    loader=PackageLoader("aitbc_api.dashboard", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = _when


# What every page may show; a page sets what it has.
_DEFAULTS: dict[str, object] = {
    "owner": None,
    "csrf": "",
    "nav": "",
    "notice": "",
    "error": "",
    "detail": "",
    "code": "",
    "bare": False,  # no navigation (the master key's one-time page, before the keys page)
}


def render(
    template: str,
    status: int = 200,
    cookies: Iterable[Cookie] = (),
    extra_headers: Mapping[str, str] | None = None,
    **context: object,
) -> Response[str]:
    return render_with(template, context, status, cookies, extra_headers)


def render_with(
    template: str,
    context: Mapping[str, object],
    status: int = 200,
    cookies: Iterable[Cookie] = (),
    extra_headers: Mapping[str, str] | None = None,
) -> Response[str]:
    html = _env.get_template(template).render({**_DEFAULTS, **context})
    return Response(
        html,
        status_code=status,
        media_type=MediaType.HTML,
        headers={**HEADERS, **(extra_headers or {})},
        cookies=[*cookies],
    )


def redirect(path: str, cookies: Iterable[Cookie] = ()) -> Redirect:
    """303 See Other: after a form post, the browser GETs the next page (no re-post on reload)."""
    return Redirect(path, status_code=303, headers=HEADERS, cookies=[*cookies])


# --- cookies -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cookies:
    """The dashboard's cookies: HttpOnly (no script reads them), SameSite=Strict (no other
    site's request carries them), sent to the dashboard's paths only, never to the API's, and
    Secure over HTTPS (the edge's own, or a trusted proxy's: TRUSTED_PROXIES), or always
    (DASHBOARD_SECURE_COOKIES)."""

    always_secure: bool

    def make(self, request: Req, name: str, value: str) -> Cookie:
        return Cookie(
            key=name,
            value=value,
            path=BASE,
            httponly=True,
            secure=self.always_secure or request.url.scheme == "https",
            samesite="strict",
        )

    def cleared(self, request: Req, name: str) -> Cookie:
        expired = self.make(request, name, "")
        expired.max_age = 0
        return expired

    def form_token(self, request: Req) -> tuple[str, list[Cookie]]:
        """The CSRF token of the anonymous forms (double submit: cookie and hidden field)."""
        token = request.cookies.get(FORM_COOKIE, "")
        if 20 <= len(token) <= 64:
            return token, []
        token = secrets.token_urlsafe(32)
        return token, [self.make(request, FORM_COOKIE, token)]


# --- forms and CSRF ------------------------------------------------------------------------

FORGED = (
    "This form has expired or did not come from this site, so nothing was changed. "
    "Reload the page and try again."
)


def refuse_cross_site(request: Req) -> None:
    """Browsers say where a request comes from: refuse what another site (or none) sent."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in {"same-origin", "none"}:
        raise DashboardError(403, FORGED)
    if request.headers.get("origin") == "null":  # sandboxed frames, data: pages
        raise DashboardError(403, FORGED)


def check_token(expected: str, given: str) -> None:
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise DashboardError(403, FORGED)


async def form_of(request: Req) -> dict[str, str]:
    """The url-encoded form's text fields, trimmed. Anything else (JSON, files) gives none."""
    form = await request.form()
    fields: dict[str, str] = {}
    for name, value in form.items():
        if isinstance(value, str) and name not in fields:
            fields[name] = value.strip()[:MAX_FIELD]
    return fields
