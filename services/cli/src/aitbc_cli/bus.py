"""The one way the CLI talks to the services: a command over NATS request/reply, sent with the
one keys command client (aitbc_runtime.commands), its failures told in one line for people."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.errors import NoServersError
from nats.errors import TimeoutError as NatsTimeoutError

from aitbc_contracts.messages import AnyCommand, Reply
from aitbc_contracts.powers import POWER_OF_SUBJECT, Power, operator_subject
from aitbc_runtime import environment
from aitbc_runtime.bus_access import BusAccess, BusAccessError, without_secrets
from aitbc_runtime.commands import CommandFailed, KeysCommands
from aitbc_runtime.process import cancel_and_wait

DEFAULT_TIMEOUT = 5.0
T = TypeVar("T")

# What a command group is given to reach the keys service; tests pass a fake.
Send = Callable[[AnyCommand], Awaitable[Reply]]


class BusError(Exception):
    """The services could not be reached or answered nonsense: a one-line message for people."""


def default_nats_url() -> str:
    """The NATS server `just up` uses: NATS_URL, else 127.0.0.1 on NATS_PORT."""
    try:
        return environment.nats_url()
    except ValueError as exc:  # a NATS_PORT that is no number: say so in one line
        raise BusError(str(exc)) from exc


def default_creds() -> str:
    """NATS_CREDS, else the admin credentials `just up` made in DATA_DIR (an operator on the
    machine that runs it), else none."""
    if os.environ.get("NATS_CREDS"):
        return os.environ["NATS_CREDS"]
    local = environment.data_dir() / "creds" / "admin.nk"
    return str(local) if local.exists() else ""


def access_of(args: argparse.Namespace) -> BusAccess:
    """Where and as whom this command reaches the bus: --nats-url, --creds, NATS_TLS_*."""
    tls = BusAccess.from_env()
    return replace(tls, url=args.nats_url, creds=args.creds)


async def _quiet(_: Exception) -> None:
    """nats-py logs every connection error with a traceback; the CLI reports one line instead."""


# How nats-server words a refused publish: `permissions violation for publish to "<subject>"`.
_REFUSED_PUBLISH = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


class RefusedPublishes:
    """The subjects the server refused a connection to publish on, noted by its error
    callback (`note`): nats-py tells of a permissions violation only there, while the refused
    request waits for its timeout."""

    def __init__(self) -> None:
        self.subjects: set[str] = set()
        self._noted = asyncio.Condition()

    async def note(self, error: Exception) -> None:
        """The connection's error callback (nats-py wants a coroutine function): every error
        but a refused publish stays quiet, as with `_quiet`."""
        found = _REFUSED_PUBLISH.search(str(error))
        if found is not None:
            async with self._noted:
                self.subjects.add(found.group(1))
                self._noted.notify_all()

    async def refused(self, subject: str) -> None:
        """Returns once the server has refused a publish on `subject`."""
        async with self._noted:
            await self._noted.wait_for(lambda: subject in self.subjects)

    async def unless_refused(self, subject: str, work: Coroutine[Any, Any, T]) -> T:
        """`work`'s result, or PublishRefused as soon as the server refuses `subject`."""
        working = asyncio.create_task(work)
        refused = asyncio.create_task(self.refused(subject))
        try:
            await asyncio.wait({working, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(task for task in (working, refused) if not task.done())
        if working.done() and not working.cancelled():
            return working.result()
        raise PublishRefused(subject)


class PublishRefused(Exception):
    def __init__(self, subject: str) -> None:
        super().__init__(subject)
        self.subject = subject


def refused_for_people(refused: PublishRefused, access: BusAccess) -> str:
    """Which credentials may not send what, and which would, in one line."""
    power = POWER_OF_SUBJECT.get(refused.subject)
    what = f"{power.value} commands" if power is not None else "there"
    which = f"the NATS credentials in use ({access.creds or 'none'})"
    instead = "the auditor's or the admin's" if power is Power.READ else "the admin's"
    return (
        f"{which} may not send {what} (permissions violation on {refused.subject}): "
        f"use {instead} credentials (--creds or NATS_CREDS)"
    )


async def connect(
    access: BusAccess,
    wait: float = DEFAULT_TIMEOUT,
    client: NATS | None = None,
    on_error: Callable[[Exception], Awaitable[None]] = _quiet,
) -> NATS:
    """One connection for one command: fail fast, with a one-line reason, when NATS is away.
    `on_error` hears the errors nats-py reports on the side (the connection's error callback)."""
    nc = client or NATS()
    try:
        options: dict[str, Any] = access.options()  # as nats.connect() takes them
    except BusAccessError as exc:
        raise BusError(str(exc)) from exc
    options |= {
        "connect_timeout": min(wait, 2.0),
        "allow_reconnect": False,
        # max_reconnect_attempts=0 would mean "forever" to nats-py: 1 gives up after a retry.
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.1,
        "error_cb": on_error,
    }
    url = without_secrets(access.url)  # a password or token in it is no one's business here
    try:
        await asyncio.wait_for(nc.connect(**options), wait)
        return nc
    except (TimeoutError, NoServersError, OSError, NatsTimeoutError) as exc:
        raise BusError(
            f"cannot reach NATS at {url} (is it running? set NATS_URL or --nats-url"
            f"{_tls_hint(access)})"
        ) from exc
    except Exception as exc:  # a malformed URL, refused credentials, ...
        if "Authorization Violation" in str(exc):
            given = f"the credentials in {access.creds}" if access.creds else "no credentials"
            raise BusError(
                f"NATS at {url} refused {given}: give an operator role's credentials "
                "with --creds or NATS_CREDS (`just up` makes them in DATA_DIR/creds)"
            ) from exc
        raise BusError(f"cannot reach NATS at {access.where()}: {exc}{_tls_hint(access)}") from exc


def _tls_hint(access: BusAccess) -> str:
    """A server that speaks TLS only says nothing to a plain client: name the setting."""
    if access.tls_ca or access.tls_cert:
        return ""
    return "; a bus on TLS (`just up --tls`) needs NATS_TLS_CA"


def for_people(failed: CommandFailed, nats_url: str, wait: float) -> str:
    """What went wrong on the way to the keys service, in one line an operator can act on."""
    match failed.why:
        case "no_responders":
            return f"{failed} (is it running?)"
        case "timeout":
            return f"the keys service did not answer within {wait:g} s"
        case "unreadable":
            return f"the keys service sent a reply the CLI cannot read: {failed.__cause__}"
    return f"cannot reach NATS at {nats_url}: {failed.__cause__}"


async def request(access: BusAccess, command: AnyCommand, wait: float = DEFAULT_TIMEOUT) -> Reply:
    """The keys service's reply to `command`, sent on the subject an operator's tool uses for
    it: a look-up on the read subject (an auditor's credentials suffice), a change on the
    operator subject (the admin's only)."""
    refusals = RefusedPublishes()
    nc = await connect(access, wait, on_error=refusals.note)
    commands = KeysCommands(nc, wait, operator_subject(command))
    try:
        return await refusals.unless_refused(commands.subject, commands.send(command))
    except CommandFailed as failed:
        raise BusError(for_people(failed, without_secrets(access.url), wait)) from failed
    except PublishRefused as refused:
        raise BusError(refused_for_people(refused, access)) from refused
    finally:
        await nc.close()


def sender(access: BusAccess, wait: float = DEFAULT_TIMEOUT) -> Send:
    async def send(command: AnyCommand) -> Reply:
        return await request(access, command, wait=wait)

    return send
