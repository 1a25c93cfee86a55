"""The path the gate names a request's route by: without the server's root_path (uvicorn
--root-path), as the app routes it; after a Starlette Mount, still from the server's root."""

from __future__ import annotations

from aitbc_gate.routes import route_path, served_path


def test_the_root_path_is_left_out() -> None:
    assert route_path({"path": "/api/v1/jobs", "root_path": "/api"}) == "/v1/jobs"
    assert route_path({"path": "/api", "root_path": "/api"}) == "/"
    assert route_path({"path": "/v1/jobs", "root_path": ""}) == "/v1/jobs"
    assert route_path({"path": "/v1/jobs"}) == "/v1/jobs"


def test_a_path_not_under_the_root_path_is_kept_whole() -> None:
    assert route_path({"path": "/apis/v1/jobs", "root_path": "/api"}) == "/apis/v1/jobs"
    assert route_path({"path": "/v1/jobs", "root_path": "/api"}) == "/v1/jobs"


def test_after_a_mount_the_path_is_the_servers() -> None:
    """A Mount at /admin, under the server's root path /api: root_path grows by the mount's
    prefix, app_root_path keeps the server's."""
    mounted = {"path": "/api/admin/users", "root_path": "/api/admin", "app_root_path": "/api"}
    assert served_path(mounted) == "/admin/users"
    assert served_path({"path": "/api/v1/jobs", "root_path": "/api"}) == "/v1/jobs"
