"""The sample Coordinator's jobs: msgspec bodies and an in-memory, per-account store."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

Status = Literal["queued", "running", "completed", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
MAX_JOBS_PER_ACCOUNT = 10_000  # the oldest are forgotten beyond this: it is a sample, in memory


class NewJob(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /v1/jobs body."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    input: Any = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class Job(msgspec.Struct, frozen=True):
    id: str
    model: str
    status: Status
    input: Any
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None


class JobResult(msgspec.Struct, frozen=True):
    job_id: str
    status: Status
    model: str
    output: Any
    completed_at: datetime


class JobNotFoundError(Exception):
    pass


class JobStateError(Exception):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return f"job_{uuid.uuid4().hex}"


class JobStore:
    """Jobs by account, oldest first. A queued job completes the first time it is fetched."""

    def __init__(
        self,
        clock: Callable[[], datetime] = _now,
        new_id: Callable[[], str] = _new_id,
        max_jobs_per_account: int = MAX_JOBS_PER_ACCOUNT,
    ) -> None:
        self._jobs: dict[str, dict[str, Job]] = {}
        self._clock = clock
        self._new_id = new_id
        self._max = max_jobs_per_account

    def create(self, account: str, new: NewJob) -> Job:
        now = self._clock()
        job = Job(
            id=self._new_id(),
            model=new.model,
            status="queued",
            input=new.input,
            params=new.params,
            created_at=now,
            updated_at=now,
        )
        jobs = self._jobs.setdefault(account, {})
        jobs[job.id] = job
        while len(jobs) > self._max:
            del jobs[next(iter(jobs))]
        return job

    def list(
        self, account: str, status: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        """Newest first, optionally of one status; and how many there are in all."""
        jobs = [
            job
            for job in reversed(self._jobs.get(account, {}).values())
            if status is None or job.status == status
        ]
        return jobs[offset : offset + limit], len(jobs)

    def _find(self, account: str, job_id: str) -> Job:
        job = self._jobs.get(account, {}).get(job_id)
        if job is None:  # another account's job is as absent as a job that never was
            raise JobNotFoundError(f"job {job_id!r} not found")
        return job

    def _put(self, account: str, job: Job) -> Job:
        self._jobs[account][job.id] = job
        return job

    def get(self, account: str, job_id: str) -> Job:
        job = self._find(account, job_id)
        if job.status in ("queued", "running"):
            now = self._clock()
            job = self._put(
                account,
                msgspec.structs.replace(job, status="completed", updated_at=now, completed_at=now),
            )
        return job

    def cancel(self, account: str, job_id: str) -> Job:
        job = self._find(account, job_id)
        if job.status == "cancelled":
            return job
        if job.status in FINISHED:
            raise JobStateError(f"job {job_id!r} is already {job.status}")
        now = self._clock()
        return self._put(
            account,
            msgspec.structs.replace(job, status="cancelled", updated_at=now, cancelled_at=now),
        )

    def result(self, account: str, job_id: str) -> JobResult:
        job = self.get(account, job_id)
        if job.status != "completed" or job.completed_at is None:
            raise JobStateError(f"job {job_id!r} is {job.status}: it has no results")
        return JobResult(
            job_id=job.id,
            status=job.status,
            model=job.model,
            output={"echo": job.input},
            completed_at=job.completed_at,
        )
