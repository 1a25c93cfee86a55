"""Which scope a request needs (SCOPE_RULES), for a key restricted to scopes
(aitbc_contracts.restrictions): the gate asks before the app routes, so it names the request's
route itself.

The setting is a list of `METHOD PATH=SCOPE` entries separated by `;` (or new lines):

- METHOD: an HTTP method, or `*` for any (HEAD is asked as GET where no rule names HEAD);
- PATH: a route template, `/v1/jobs/{id}`, matched against the request's route name (each
  segment that is a word of a path here or of USAGE_ROUTE_WORDS keeps its name, any other
  is `{id}`, as usage events name routes: aitbc_gate.usage_events.RouteTemplates); or a prefix
  ending in `*`, `/v1/jobs/*`, matched against the path as sent;
- SCOPE: the scope that grants it, `jobs:read`.

A template wins over a prefix, a longer prefix over a shorter one, a named method over `*`.
A request no rule maps needs a scope no key holds: a scoped key is refused it (least
privilege). A path with a `.` or `..` segment is never mapped: it could name one route here
and another where it is resolved. Keys without scopes never ask.
"""

from __future__ import annotations

import re

from aitbc_contracts import restrictions
from aitbc_gate.usage_events import RouteTemplates

_METHOD = re.compile(r"\*|[A-Z]+")
UNMAPPED = ""  # what `needed` answers for a request no rule maps


class ScopeRules:
    """SCOPE_RULES, parsed once; each (method, path)'s answer remembered (paths repeat)."""

    KEPT = 4096

    def __init__(self, text: str, route_words: tuple[str, ...] = ()) -> None:
        self.exact: dict[tuple[str, str], str] = {}  # (method, template) -> scope
        prefixes: list[tuple[str, str, str]] = []  # (prefix, method, scope)
        words = set(route_words)
        for entry in filter(None, (part.strip() for part in re.split(r"[;\n]", text))):
            method, path, scope = _entry(entry)
            if path.endswith("*"):
                prefixes.append((path[:-1], method, scope))
                words.update(s for s in path[:-1].split("/") if s)  # a refusal names GET /v1/usage
            else:
                self.exact[(method, path)] = scope
                words.update(s for s in path.split("/") if s and "{" not in s)
        # Longest prefix first; at the same length, a named method before `*`.
        self.prefixes = sorted(prefixes, key=lambda rule: (-len(rule[0]), rule[1] == "*"))
        self.templates = RouteTemplates(tuple(sorted(words)))
        self._known: dict[tuple[str, str], str] = {}

    def route(self, path: str) -> str:
        """The request's route name, as the rules' templates name routes."""
        return self.templates.of("", path)

    def needed(self, method: str, path: str) -> str:
        """The scope a `method` request of `path` needs, or UNMAPPED when no rule maps it."""
        known = self._known.get((method, path))
        if known is None:
            known = self._needed(method, path)
            if len(self._known) >= self.KEPT:
                self._known.clear()  # paths hold ids: start over rather than grow
            self._known[(method, path)] = known
        return known

    def _needed(self, method: str, path: str) -> str:
        segments = path.split("/")
        if "." in segments or ".." in segments:
            return UNMAPPED
        methods = (method, "GET", "*") if method == "HEAD" else (method, "*")
        name = self.route(path)
        for asked in methods:
            scope = self.exact.get((asked, name))
            if scope is not None:
                return scope
        for prefix, rule_method, scope in self.prefixes:
            if rule_method in methods and path.startswith(prefix):
                return scope
        return UNMAPPED


def _entry(entry: str) -> tuple[str, str, str]:
    """One `METHOD PATH=SCOPE` entry, or ValueError saying what is wrong with it."""
    rule, _, scope = entry.rpartition("=")
    method, _, path = rule.strip().partition(" ")
    method, path, scope = method.strip().upper(), path.strip(), scope.strip()
    if not rule or _METHOD.fullmatch(method) is None or not path.startswith("/"):
        raise ValueError(
            f"SCOPE_RULES: {entry!r} is not METHOD PATH=SCOPE (e.g. GET /v1/jobs/*=jobs:read)"
        )
    if "*" in path[:-1]:
        raise ValueError(f"SCOPE_RULES: {entry!r}: '*' may only end a path (a prefix)")
    try:
        restrictions.scopes([scope])
    except restrictions.InvalidRestriction as exc:
        raise ValueError(f"SCOPE_RULES: {entry!r}: {exc}") from None
    return method, path, scope
