"""API keys and exact plan limits for any ASGI app, with no proxy hop.

    from aitbc_gate import GateMiddleware
    app = GateMiddleware(app)  # settings from the environment, as the edge reads them

The request pipeline the edge runs, as a library: key extraction (`auth`), the auth cache kept
true by the verified key event stream (`auth_cache`, `cache_invalidation`), exact limits with
leases and batched decisions (`limits`, `leases`, `decisions`), the rate-limit headers, the
usage events (`usage_events`, `usage_spool`) and the error bodies (`errors`). `core` runs the
parts, `requests` is the request layer around an app, `admission` what a gated request passes,
`middleware` the ASGI middleware that puts them together in front of any app.
"""

from aitbc_gate.auth import Principal
from aitbc_gate.middleware import CALLER, GateMiddleware, caller_of
from aitbc_gate.settings import GateSettings

__all__ = ["CALLER", "GateMiddleware", "GateSettings", "Principal", "caller_of"]
