"""The path an app's routes are matched against: the request's path without the server's
root_path. An ASGI server behind a proxy that strips a prefix (uvicorn --root-path /api) puts
the prefix in both `path` and `root_path`, and an app's routes, PUBLIC_ROUTES, SCOPE_RULES and
the route names of usage events are the app's, without it (Starlette routes the same way)."""

from __future__ import annotations

from aitbc_gate.types import Scope


def route_path(scope: Scope) -> str:
    """`scope`'s path without its root_path, when the path is under it."""
    return _under(scope["path"], scope.get("root_path", ""))


def served_path(scope: Scope) -> str:
    """The same once the app has routed the request: a Starlette Mount adds its prefix to
    root_path, and keeps the server's in app_root_path."""
    return _under(scope["path"], scope.get("app_root_path", scope.get("root_path", "")))


def _under(path: str, root: str) -> str:
    if not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    if not rest:
        return "/"  # the root itself
    return rest if rest.startswith("/") else path  # /apis is not under /api
