"""Cloud credentials are refreshed in the background before they expire (README / DESIGN.md: "refreshed before
expiry"; "never block the event loop"), pinned without sleeping: the caches' clocks are replaced by a fake one
and the credential source by one that blocks until the test lets it answer.

What is pinned, for Bedrock's ``AwsCredentials`` and the Google (and Azure) ``GoogleCredentials`` cache alike: in
the refresh window (still valid, expiry near) a request gets the current credentials *without suspending at all*
while exactly one refresh starts beside it; the next request after that refresh gets the new ones; past the last
usable moment a request waits for the refresh instead of sending credentials about to expire.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from agentgateway import google_auth
from agentgateway.google_auth import GoogleCredentials
from agentgateway.providers import bedrock
from agentgateway.providers.bedrock import AwsCredentials, FrozenCredentials

T = TypeVar("T")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def without_waiting(coro: Coroutine[Any, Any, T]) -> T:
    """Runs ``coro`` to its end in one step; fails if it would suspend (wait for anything)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the request waited (it suspended) although the credentials in hand were still valid")


class Source:
    """A credential source: answers the first fetch at once; each later fetch blocks until ``release()``."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Event()
        self._go = threading.Event()

    def fetch(self) -> int:
        self.calls += 1
        if self.calls > 1:
            self.started.set()
            assert self._go.wait(30), "the test never released the refresh"
        return self.calls

    def release(self) -> None:
        self._go.set()


# -- Bedrock (AWS credential chain) ----------------------------------------------------------------------------


LIFETIME = 3600.0


def _aws(monkeypatch: pytest.MonkeyPatch) -> tuple[AwsCredentials, Clock, Source]:
    clock, source = Clock(1_000_000.0), Source()

    def resolve(botocore_credentials: object) -> tuple[object, FrozenCredentials]:
        n = source.fetch()
        return object(), FrozenCredentials(f"AKIA{n}", f"secret{n}", f"token{n}", clock.now + LIFETIME)

    monkeypatch.setattr(bedrock, "_resolve", resolve)
    monkeypatch.setattr(bedrock, "time", SimpleNamespace(time=clock))
    return AwsCredentials(), clock, source


def test_bedrock_credentials_are_refreshed_in_the_background_while_still_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials, clock, source = _aws(monkeypatch)

    async def run() -> None:
        first = await credentials.get()
        assert first.access_key == "AKIA1"
        clock.now += LIFETIME - 300 - 1  # not yet in the refresh window: cached, nothing fetched
        assert without_waiting(credentials.get()) is first
        assert source.calls == 1
        clock.now += 2  # in the window (5 minutes before expiry): still valid
        for _ in range(3):  # however many requests arrive meanwhile: none waits, one refresh runs
            assert without_waiting(credentials.get()) is first
        assert await asyncio.to_thread(source.started.wait, 30), "no background refresh started"
        source.release()
        refresh = credentials._task  # the one refresh in flight: its end is the point to look again
        assert refresh is not None
        await refresh
        assert without_waiting(credentials.get()).access_key == "AKIA2"
        assert source.calls == 2

    asyncio.run(run())


def test_bedrock_credentials_past_their_last_usable_moment_are_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials, clock, source = _aws(monkeypatch)

    async def run() -> None:
        await credentials.get()
        clock.now += LIFETIME - 5  # within 10 s of expiry: they could expire on the way
        waiting = asyncio.ensure_future(credentials.get())
        assert await asyncio.to_thread(source.started.wait, 30)
        await asyncio.sleep(0)
        assert not waiting.done(), "credentials about to expire were handed out"
        source.release()
        assert (await waiting).access_key == "AKIA2"

    asyncio.run(run())


# -- Google (Vertex AI) and Azure Entra ID tokens: one refresh-ahead cache -------------------------------------


class FakeGoogleCredentials(GoogleCredentials):
    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source_of_tokens = source

    def _refresh(self) -> tuple[str, float]:
        return f"token-{self.source_of_tokens.fetch()}", LIFETIME


def _google(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeGoogleCredentials, Clock, Source]:
    clock, source = Clock(5_000.0), Source()
    monkeypatch.setattr(google_auth, "time", SimpleNamespace(monotonic=clock))
    return FakeGoogleCredentials(source), clock, source


def test_google_tokens_are_refreshed_in_the_background_while_still_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens, clock, source = _google(monkeypatch)

    async def run() -> None:
        assert await tokens.token() == "token-1"
        clock.now += LIFETIME - google_auth.REFRESH_MARGIN - 1
        assert without_waiting(tokens.token()) == "token-1"
        assert source.calls == 1
        clock.now += 2  # in the refresh window
        for _ in range(3):
            assert without_waiting(tokens.token()) == "token-1"
        assert await asyncio.to_thread(source.started.wait, 30), "no background refresh started"
        source.release()
        refresh = tokens._background  # the one refresh in flight
        assert refresh is not None
        await refresh
        assert without_waiting(tokens.token()) == "token-2"
        assert source.calls == 2, "one refresh for all the requests in the window"

    asyncio.run(run())


def test_google_tokens_past_their_last_usable_moment_are_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens, clock, source = _google(monkeypatch)

    async def run() -> None:
        await tokens.token()
        clock.now += LIFETIME - google_auth.EXPIRY_MARGIN + 1
        waiting = asyncio.ensure_future(tokens.token())
        assert await asyncio.to_thread(source.started.wait, 30)
        await asyncio.sleep(0)
        assert not waiting.done(), "a token about to expire was handed out"
        source.release()
        assert await waiting == "token-2"

    asyncio.run(run())
