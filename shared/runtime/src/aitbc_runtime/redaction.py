"""URLs as they may be printed: in a log line, an error message, a help text or a summary.

Database and NATS URLs may carry a password (`postgresql://user:pass@host/db`,
`nats://user:pass@host`), and a NATS URL a token (`nats://token@host`); whoever reads the
output of a command or a process's log must not learn them.
"""

from __future__ import annotations

HIDDEN = "***"


def without_secrets(url: str, *, token: bool = False) -> str:
    """`url` with the password in it replaced by ***; with `token`, a lone name before the @
    too (NATS reads it as a token, where a database reads a user name)."""
    # Split by hand rather than with urlsplit: a URL without a scheme (`u:p@host:4222`) would
    # be read as a scheme and a path, and its password kept.
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if colon:
        userinfo = f"{user}:{HIDDEN}"
    elif token:
        userinfo = HIDDEN
    return f"{scheme}{separator}{userinfo}@{host}{slash}{path}"
