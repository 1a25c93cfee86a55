"""Edges' presence on the bus: each edge says it is alive every PRESENCE_EVERY seconds, so that
every edge knows how many share an account's limit when the usage service cannot be asked
(the edge's fail-open limiter admits its share: aitbc_gate.presence).

An `EdgePresence` on `aitbc.edges.presence.<edge id>` counts its edge alive for `alive_for`
seconds (at most ALIVE_FOR_MAX, whatever it says); a stopping edge says 0, and is counted out
at once. Only edges publish or read these (aitbc_infra.bus_roles).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

PRESENCE_EVERY = 2.0  # seconds between an edge's heartbeats
ALIVE_FOR = 3 * PRESENCE_EVERY  # two heartbeats may be lost before an edge is counted out
ALIVE_FOR_MAX = 60.0


class EdgePresence(msgspec.Struct, frozen=True, tag="edge.presence.v1"):
    """An edge is alive, and counts as such for `alive_for` seconds from when it is heard."""

    edge_id: Annotated[str, msgspec.Meta(max_length=64)]  # edge_ and 16 hex digits
    alive_for: float = ALIVE_FOR


presence_decoder = msgspec.json.Decoder(EdgePresence)
