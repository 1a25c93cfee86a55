"""Which paths need no key (PUBLIC_ROUTES): exact routes, prefixes, and no way past a prefix
by dot segments (aitbc_gate.settings.PublicPaths)."""

from __future__ import annotations

import pytest

from aitbc_gate.settings import PublicPaths

PUBLIC = PublicPaths(("/v1/health", "/docs*"))


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/v1/health", True),
        ("/v1/health/", False),
        ("/v1/healthz", False),
        ("/docs", True),
        ("/docs/page", True),
        ("/docs/.well-known/x", True),  # a dot starts a name, not a segment
        ("/docs/../v1/jobs", False),  # resolved by the app or a proxy: /v1/jobs
        ("/docs/./../v1/jobs", False),
        ("/docs/x/..", False),
        ("/docs/.", False),
        ("/v1/jobs", False),
    ],
)
def test_a_path_is_public_by_its_route_or_a_prefix_without_dot_segments(
    path: str, public: bool
) -> None:
    assert (path in PUBLIC) is public
