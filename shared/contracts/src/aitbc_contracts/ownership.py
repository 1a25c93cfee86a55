"""What a lease bucket holds (aitbc_runtime.ownership): its members' heartbeats, and each
share's holder. The holder's epoch is not in the value: it is the revision that wrote it."""

from __future__ import annotations

import msgspec


class LeaseMember(msgspec.Struct, frozen=True):
    """`member.<id>`: a process that may hold shares, rewritten while it lives."""

    host: str  # for people reading the bucket: which process this is
    pid: int


class LeaseShare(msgspec.Struct, frozen=True):
    """`share.<name>`: the member that holds the share (a usage partition `p<n>`, or
    `relay`); deleted when it is handed over."""

    owner: str  # a member id
