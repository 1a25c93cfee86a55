"""An example: API keys and exact plan limits in a FastAPI app, with the gate in process.

The gate is one line, `app.add_middleware(GateMiddleware)`. Every request to a path that is not
public (PUBLIC_ROUTES: /v1/health by default) then needs the key of an active API key; it is
counted against the key's limits exactly as at the edge, answered with the same rate-limit
headers and error bodies, and recorded as usage. The app finds the caller, an
`aitbc_gate.Principal`, in `request.state.aitbc_caller`: here its jobs are the caller's
account's, as the sample Coordinator's are.

    .venv/bin/python examples/fastapi_gate.py    # serves on EXAMPLE_HOST:EXAMPLE_PORT

The gate reads the edge's settings from the environment (aitbc_gate.GateSettings) and reaches
the bus as an edge does, as the `edge` role (docs/security.md): NATS_URL, NATS_CREDS (where
`just up` made it, `.data/creds/edge.nk`) and NATS_TLS_CA and the like where the bus has TLS.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from aitbc_gate import GateMiddleware, Principal

app = FastAPI(title="Jobs, behind the AITBC API key gate")
app.add_middleware(GateMiddleware)  # settings from the environment, as the edge reads them


def caller(request: Request) -> Principal:
    """Who is calling: the gate admitted them (a public route has no caller: never use it)."""
    principal: Principal = request.state.aitbc_caller
    return principal


Caller = Annotated[Principal, Depends(caller)]


class NewJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    input: Any = None
    params: dict[str, Any] = Field(default_factory=dict)


class Job(NewJob):
    id: str
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    created_at: datetime
    updated_at: datetime


class JobPage(BaseModel):
    jobs: list[Job]
    total: int
    limit: int
    offset: int


jobs_of: defaultdict[str, list[Job]] = defaultdict(list)  # by account, oldest first; in memory


@app.get("/v1/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/jobs", status_code=201)
def create_job(new: NewJob, who: Caller) -> Job:
    now = datetime.now(UTC)
    job = Job(
        id=f"job_{uuid.uuid4().hex}",
        status="queued",
        created_at=now,
        updated_at=now,
        **new.model_dump(),
    )
    jobs_of[who.account_id].append(job)
    return job


@app.get("/v1/jobs")
def list_jobs(
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobPage:
    newest_first = jobs_of[who.account_id][::-1]
    return JobPage(
        jobs=newest_first[offset : offset + limit],
        total=len(newest_first),
        limit=limit,
        offset=offset,
    )


if __name__ == "__main__":
    host = os.environ.get("EXAMPLE_HOST", "127.0.0.1")
    port = int(os.environ.get("EXAMPLE_PORT", "8020"))
    # proxy_headers off: the gate reads X-Forwarded-For from TRUSTED_PROXIES only; uvicorn's
    # own handling would believe any local process, and keys' allow-lists with it.
    uvicorn.run(app, host=host, port=port, proxy_headers=False)
