"""The dashboard at /dashboard: server-rendered pages for account owners, on the same commands,
rules and error codes as the REST API (see `owner` and `access`).

It wires itself (`Dashboard`, a Litestar plugin): its routes and error pages, its session store
(made by its own lifespan, on the edge's NATS connection) and the dependencies its pages name.
The core knows nothing of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar, Router
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol
from litestar.static_files import create_static_files_router

from aitbc_api.dashboard.account import AccountPages
from aitbc_api.dashboard.cookies import dashboard_request
from aitbc_api.dashboard.error_pages import error_pages, with_dashboard_pages
from aitbc_api.dashboard.key_restrictions import KeyRestrictionPages
from aitbc_api.dashboard.public import PublicPages
from aitbc_api.dashboard.sessions import SessionStore, session_bucket
from aitbc_api.dashboard.web import BASE, Cookies
from aitbc_api.lifespan import nats_of
from aitbc_api.settings import Settings
from aitbc_contracts.messages import Code
from aitbc_gate.auth import Authenticator
from aitbc_gate.throttle import AttemptBudget

__all__ = ["Dashboard"]

SESSIONS = "dashboard_sessions"  # the app state's keys
SIGN_INS = "dashboard_sign_ins"


def provide_sessions(state: State) -> SessionStore:
    sessions: SessionStore = state[SESSIONS]
    return sessions


def provide_sign_ins(state: State) -> AttemptBudget:
    sign_ins: AttemptBudget = state[SIGN_INS]
    return sign_ins


def provide_authenticator(state: State) -> Authenticator:
    """The gate's own: a session is re-checked like an API call with its master key."""
    authenticator: Authenticator = state.gate.authenticator
    return authenticator


class Dashboard(InitPluginProtocol):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cookies = Cookies(always_secure=settings.dashboard_secure_cookies)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(self.router())
        app_config.exception_handlers = with_dashboard_pages(app_config.exception_handlers)
        app_config.lifespan.append(self.sessions)  # after the edge's: its connection is up
        return app_config

    @asynccontextmanager
    async def sessions(self, app: Litestar) -> AsyncIterator[None]:
        """Sessions in a NATS KV bucket, shared by every edge, and the sign-ins' budget: in this
        process's memory, but its overall budget is the whole system's (it bounds how full the
        bucket gets), of which this edge admits its share of the edges the gate knows alive."""
        settings = self.settings
        app.state[SIGN_INS] = AttemptBudget(
            "sign-in",
            Code.TOO_MANY_SIGN_INS,
            settings.signin_per_address_per_minute,
            60,
            settings.signin_global_per_minute,
            edges=app.state.gate.edges,
        )
        bucket = await session_bucket(
            nats_of(app),
            settings.dashboard_session_lifetime,
            settings.dashboard_max_sessions,
            settings.nats.replicas,
        )
        app.state[SESSIONS] = SessionStore(
            bucket,
            settings.dashboard_session_idle,
            settings.dashboard_session_lifetime,
            settings.dashboard_sessions_per_account,
        )
        yield

    def router(self) -> Router:
        pages = error_pages(self.cookies)
        static = create_static_files_router(
            path="/static",  # under /dashboard
            directories=[Path(__file__).parent / "static"],
            include_in_schema=False,
            exception_handlers=pages,
        )
        return Router(
            path=BASE,
            route_handlers=[PublicPages, AccountPages, KeyRestrictionPages, static],
            dependencies={
                "sessions": Provide(provide_sessions, sync_to_thread=False),
                "authenticator": Provide(provide_authenticator, sync_to_thread=False),
                "jar": Provide(self._cookies, sync_to_thread=False),
                "sign_ins": Provide(provide_sign_ins, sync_to_thread=False),
            },
            exception_handlers=pages,
            include_in_schema=False,
            request_class=dashboard_request(self.settings.max_cookie_bytes),
        )

    def _cookies(self) -> Cookies:
        return self.cookies
