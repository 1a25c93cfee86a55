"""What a run measures and for how long: the full run, or `--quick`'s smoke run."""

from __future__ import annotations

from dataclasses import dataclass, replace

PLAN_LIMITS = "free=60,pro=600,enterprise=100000000"  # the load can never reach a limit
# The same plans as a plans file, but pro has a second and a day too (limits the load can
# never reach either): the decisions phase measures what those windows cost against the
# minute alone, with accounts seeded on pro (WINDOWED_ACCOUNTS).
PLANS = """
[plans.free]
per_minute = 60

[plans.pro]
per_minute = 100000000
burst_per_second = 100000000
per_day = 1000000000000

[plans.enterprise]
per_minute = 100000000
"""
WINDOWED_ACCOUNTS = 1_000


@dataclass(frozen=True)
class Config:
    quick: bool
    rounds: int  # A E B C R D N rounds
    seconds: float  # wrk seconds per scenario per round
    warmup: float  # wrk seconds per scenario before the rounds
    connections: int
    paced_rounds: int
    paced_seconds: float
    bulk: int  # accounts with a master key each: auth checks, memory
    decision_accounts: int
    batch_sizes: tuple[int, ...]
    bus_rounds: int
    bus_seconds: float
    revocations: int
    load_accounts: int
    keys_per_account: int
    profile_seconds: float  # 0: no profiles
    usage_pair_rounds: int  # rounds of decisions with one, then two usage processes
    usage_pair_seconds: float  # seconds of each of those runs
    takeover_kills: int  # SIGKILLs of a partition's holder, each timed to the new holder
    gate_cache_keys: int  # keys in the gate's auth cache whose memory is measured (in process)

    @classmethod
    def of(cls, quick: bool, profile: bool | None) -> Config:
        # Many short rounds rather than a few long ones: this machine's speed drifts by tens of
        # percent within seconds, and the ratios pair scenarios measured one after the other.
        full = cls(
            quick=False,
            rounds=8,
            seconds=5.0,
            warmup=2.0,
            connections=32,
            paced_rounds=8,
            paced_seconds=5.0,
            bulk=100_000,
            decision_accounts=10_000,
            batch_sizes=(1, 10, 100, 1000),
            bus_rounds=3,
            bus_seconds=2.0,
            revocations=200,
            load_accounts=8,
            keys_per_account=64,
            profile_seconds=0.0 if profile is False else 8.0,
            usage_pair_rounds=8,  # a round's ratio moves by tens of percent here: pool many
            usage_pair_seconds=2.5,
            takeover_kills=20,
            gate_cache_keys=100_000,  # a few seconds, --quick as well: tables at full scale
        )
        if not quick:
            return full
        # About a minute: a smoke test that every phase works, not a result.
        return replace(
            full,
            quick=True,
            rounds=2,
            seconds=2.0,
            warmup=1.0,
            paced_rounds=1,
            paced_seconds=2.0,
            bulk=1_000,
            decision_accounts=1_000,
            batch_sizes=(100,),
            bus_rounds=1,
            bus_seconds=1.5,
            revocations=20,
            profile_seconds=3.0 if profile else 0.0,
            usage_pair_rounds=2,
            usage_pair_seconds=1.5,
            takeover_kills=5,
        )
