"""The usage plan book after a reset: an answer asked for before it is not kept after it."""

from __future__ import annotations

import asyncio

from aitbc_usage.plans import PlanBook


async def test_a_lookup_in_flight_across_a_reset_is_used_once_and_not_kept() -> None:
    answers = ["enterprise", "free"]  # before the reset, then after it
    gate = asyncio.Event()

    async def lookup(_: str) -> str | None:
        answer = answers.pop(0)
        if answer == "enterprise":
            await gate.wait()
        return answer

    book = PlanBook(lookup)
    before = asyncio.ensure_future(book.resolve("acc_1"))
    await asyncio.sleep(0)
    book.reset()  # the stream contradicted what the book had read: what it knew may be stale
    after = await book.resolve("acc_1")  # asked again, not joined to the older question
    gate.set()
    assert (await before, after) == ("enterprise", "free")
    assert book.known("acc_1") == "free"
