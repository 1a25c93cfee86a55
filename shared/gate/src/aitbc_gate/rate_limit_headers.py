"""The headers that report a rate-limit verdict: X-RateLimit-* as the seed documents, and the
IETF draft's RateLimit-Policy and RateLimit (declared in the OpenAPI document by
aitbc_api.apidocs.headers).

X-RateLimit-Limit/Remaining/Reset and RateLimit report one window: the one that refused, else
the one closest to refusing (the fewest requests left; the longer one on a tie). A plan with
more than the minute lists every policy in RateLimit-Policy (aitbc_gate.policies)."""

from __future__ import annotations

import math

from aitbc_contracts.usage import WINDOW_SECONDS
from aitbc_gate.limits import Verdict
from aitbc_gate.policies import Policies

Header = tuple[bytes, bytes]
_Fixed = tuple[tuple[Header, ...], bytes]  # a window's fixed headers, the RateLimit start
# Numbers as header values, made once: what is left of a window, and its seconds (a formatted
# number per request cost a third of these headers' time)
_DIGITS = [b"%d" % n for n in range(10_000)]


def _digits(n: int) -> bytes:
    return _DIGITS[n] if 0 <= n < 10_000 else b"%d" % n


class RateLimitHeaders:
    """Made per request, on the hot path: what stays the same for a policy's window is made
    once, and every request of the window shares it."""

    KEPT = 256  # windows; each one's reset is in its key, so past windows go at a clear

    def __init__(self) -> None:
        self._fixed: dict[tuple[str, str, int, int, int, Policies | None], _Fixed] = {}

    def of(self, verdict: Verdict, now: float) -> list[Header]:
        decision = verdict.decision
        if decision is None:
            return [(b"x-ratelimit-mode", verdict.mode.encode())]
        fixed, started = self._fixed_headers(
            verdict, decision.limit, decision.reset, decision.window
        )
        remaining = _digits(decision.remaining)
        seconds_left = _digits(max(0, math.ceil(decision.reset - now)))
        return [
            *fixed,
            (b"x-ratelimit-remaining", remaining),
            (b"ratelimit", started + remaining + b";t=" + seconds_left),
        ]

    def _fixed_headers(self, verdict: Verdict, limit: int, reset: int, window: int) -> _Fixed:
        policies = verdict.policies
        # a plan's policies are made once per plan and key limit: one object, a cheap key
        key = (verdict.mode, verdict.policy, limit, reset, window, policies)
        fixed = self._fixed.get(key)
        if fixed is None:
            if len(self._fixed) >= self.KEPT:
                self._fixed.clear()
            if policies is None:
                name = verdict.policy.encode()
                policy = b'"%s";q=%d;w=%d' % (name, limit, WINDOW_SECONDS)
            else:
                name, policy = policies.names.get(window, verdict.policy.encode()), policies.header
            fixed = self._fixed[key] = (
                (
                    (b"x-ratelimit-mode", verdict.mode.encode()),
                    (b"x-ratelimit-limit", b"%d" % limit),
                    (b"x-ratelimit-reset", b"%d" % reset),
                    (b"ratelimit-policy", policy),
                ),
                b'"' + name + b'";r=',
            )
        return fixed
