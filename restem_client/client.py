"""`VerifierClient` and `AsyncVerifierClient`: the verifier service over gRPC.

    client = VerifierClient("127.0.0.1:50051", token=..., max_in_flight=256)
    client.check_many([MathCheck(completion, gold)])         # records in, CheckResults out
    client.verify_many(requests, progress=True)              # the wire itself: protobuf
                                                             # requests and responses

`check_many` is the `Verifier` protocol's one call: it translates records to the wire and
back (`verifier_server.wire`) around `verify_many`, which streams protobuf requests and
answers each once, in input order (`verify` is the unary RPC). The wire methods are for
what records cannot say (a request from another language, a malformed one on purpose).

`target` is "host:port", "dns:///host:port" (every address the name resolves to) or a list
of "host:port" replicas; requests are balanced with gRPC's round_robin policy. `token` is
sent as `authorization: Bearer ...`; `tls` is True (system roots) or a `Tls` with the
server's CA and, for mTLS, a client certificate and key.

Nothing is lost or answered twice: `verify_many` sends each request with a batch-unique id,
keeps the ones not answered yet, and after UNAVAILABLE or RESOURCE_EXHAUSTED (only those)
reconnects with exponential backoff and sends just those again. Answers that arrive twice
(a request the server finished just before the connection broke) are dropped by id. At
most `max_in_flight` requests are outstanding at once. A stream message holds at most PACK
requests and half the message limit in bytes; a request that is itself larger than the limit
is never sent: `verify_many` answers it INVALID_REQUEST with a message saying so, and the
other requests go on.

Nothing waits silently: calls fail fast, and after UNAVAILABLE the client probes the server
(GetInfo) until one answers, for at most `connect_timeout_s` (default 30 s, or
$RESTEM_CONNECT_TIMEOUT), with a warning logged while it waits; then it raises
`VerifierUnavailable`, naming the address and the last gRPC status and detail. This bounds
both a server that is not up yet and one that went away mid-batch.

A call's `timeout_s` bounds the whole call, retries and backoff included (each attempt's
gRPC deadline is the time left); when it passes the call raises `VerifyTimeout`, a
grpc.RpcError with DEADLINE_EXCEEDED.

`open_verifier(server, token_file)` is how commands get a verifier: this client, checked
reachable at once, when a server is given, else the in-process `LocalVerifier` (both
implement `restem_client.verifier.Verifier`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from tqdm import tqdm

from evals.checks import Check, CheckResult, VerifierInfo
from restem_client.verifier import Verifier, VerifyTimeout
from restem_proto.v1 import verifier_pb2 as pb
from restem_proto.v1 import verifier_pb2_grpc as pb_grpc
from verifier_server.token_file import read_token
from verifier_server.wire import info_from_pb, to_request, to_result

log = logging.getLogger(__name__)

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
# A probe that ends with one of these found no server; any other status is a server answering.
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
PACK = 64  # requests per stream message (VerifyBatches): gRPC's cost is per message
CONNECT_TIMEOUT_ENV = "RESTEM_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 30.0
PROBE_INTERVAL_S = 0.25


class VerifierUnavailable(grpc.RpcError):
    """No verifier answered at `target` within the connect timeout. Like any grpc.RpcError,
    `code()` and `details()` are those of the last failed probe."""

    def __init__(self, target: str, timeout_s: float, error: grpc.RpcError) -> None:
        self.target, self.timeout_s = target, timeout_s
        self._code, self._details = error.code(), error.details()
        super().__init__(f"no verifier answered at {target} within {timeout_s:g} s: "
                         f"{self._code.name}: {self._details}")

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _retryable(exc: grpc.RpcError) -> bool:
    """Worth another attempt: UNAVAILABLE, or RESOURCE_EXHAUSTED from a busy server, but not
    a message over the size limit, which is refused the same way every time."""
    return exc.code() in RETRYABLE and "larger than max" not in (exc.details() or "")


class _CallClock:
    """The time left of a call's `timeout_s` (None: no limit), for each attempt."""

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def left(self) -> float | None:
        """Seconds left for the next attempt; VerifyTimeout once none are."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise VerifyTimeout(self.timeout_s)
        return left

    def cap(self, seconds: float) -> float:
        """`seconds`, or less when the call has less left (a sleep or a probe)."""
        left = self.left()
        return seconds if left is None else min(seconds, left)


def _timed_out(exc: grpc.RpcError, timeout_s: float | None) -> None:
    """Raise VerifyTimeout when `exc` is the call's own deadline passing."""
    if timeout_s is not None and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise VerifyTimeout(timeout_s) from exc


def open_verifier(server: str | None = None, token_file: Path | None = None, *,
                  sandbox: str = "auto", sandbox_workers: int | None = None,
                  timeout_s: float = 5.0, connect_timeout_s: float | None = None) -> Verifier:
    """The verifier service at `server`, or an in-process one. A service is asked for its
    info at once, so an unreachable one (VerifierUnavailable, after the connect timeout) or
    a refusal fails here, before any sampling; a bad token file is a TokenFileError.
    `timeout_s`: seconds per symbolic math check in process."""
    if server:
        client = VerifierClient(server, token=read_token(token_file) if token_file else None,
                                connect_timeout_s=connect_timeout_s)
        try:
            client.info()
        except grpc.RpcError:
            client.close()
            raise
        return client
    from restem_client.local_verifier import LocalVerifier

    return LocalVerifier(sandbox=sandbox, sandbox_workers=sandbox_workers, timeout_s=timeout_s)


@dataclass(frozen=True)
class Tls:
    ca: Path | None = None  # PEM roots to trust (None: the system's)
    cert: Path | None = None  # client certificate (mTLS)
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        read = lambda p: p.read_bytes() if p else None  # noqa: E731
        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


def _connect_timeout(seconds: float | None) -> float:
    """`seconds`, else $RESTEM_CONNECT_TIMEOUT, else 30; a bad value is a ValueError naming
    where it came from."""
    if seconds is None:
        text = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
        if not text:
            return DEFAULT_CONNECT_TIMEOUT_S
        source = f"{CONNECT_TIMEOUT_ENV}={text!r}"
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
    else:
        source = f"connect timeout {seconds!r}"
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{source}: expected a number of seconds >= 0")
    return seconds


def _describe(target: str | list[str]) -> str:
    return ",".join(target) if isinstance(target, list) else target


class _Wait:
    """One bounded wait for a server, logged as a warning as it starts: `cause` is the
    UNAVAILABLE that started it. It also ends (VerifyTimeout) when the call's `clock` does."""

    def __init__(self, target: str, timeout_s: float, cause: grpc.RpcError,
                 clock: _CallClock) -> None:
        self.target, self.timeout_s, self.clock = target, timeout_s, clock
        self.deadline = time.monotonic() + timeout_s
        log.warning("restem: waiting up to %g s for the verifier at %s (%s) ...", timeout_s,
                    target, cause.code().name)

    def probe_timeout_s(self) -> float:
        # A connection attempt that hangs (a silently dropped SYN) ends at the deadline too.
        return self.clock.cap(max(self.deadline - time.monotonic(), 0.1))

    def failed(self, error: grpc.RpcError) -> float:
        """After a probe found no server: seconds to sleep before the next one, or raise."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise VerifierUnavailable(self.target, self.timeout_s, error)
        return self.clock.cap(min(PROBE_INTERVAL_S, remaining))


def _channel_args(target: str | list[str], max_message_mb: int):
    if isinstance(target, list):
        target = "ipv4:" + ",".join(target) if target else ""
    if not target:
        raise ValueError("a verifier target is needed (host:port, dns:///host:port, or a list)")
    options = [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.max_receive_message_length", max_message_mb * 2**20),
        ("grpc.max_send_message_length", max_message_mb * 2**20),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.enable_retries", 0),  # retries are ours, with exactly-once bookkeeping
        # gRPC's reconnect backoff grows to 120 s; capped, a bounded wait sees a server that
        # comes up within a second.
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    return target, options


def _credentials(tls: Tls | bool | None) -> grpc.ChannelCredentials | None:
    if tls is None or tls is False:
        return None
    return (tls if isinstance(tls, Tls) else Tls()).credentials()


def _connect(target: str | list[str], token: str | None, tls: Tls | bool | None,
             max_message_mb: int):
    """(channel, stub, call metadata)."""
    address, options = _channel_args(target, max_message_mb)
    credentials = _credentials(tls)
    channel = (grpc.secure_channel(address, credentials, options) if credentials
               else grpc.insecure_channel(address, options))
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return channel, pb_grpc.VerifierStub(channel), metadata


def _request_limit(max_message_bytes: int) -> int:
    """The largest request a stream message can carry (the message wraps it in a few bytes)."""
    return max_message_bytes - 1024


def _backoff_s(base: float, attempt: int) -> float:
    return min(base * 2**attempt, 10.0)


class _Batch:
    """The bookkeeping of one verify_many: wire ids, answers, what is still missing.
    `max_bytes`: a request larger than this is answered here, INVALID_REQUEST, never sent."""

    def __init__(self, requests: list[pb.VerifyRequest], max_bytes: int = 2**62) -> None:
        prefix = uuid.uuid4().hex[:12]
        self.wire: list[pb.VerifyRequest] = []
        self.sizes: list[int] = []
        self.caller_ids = [r.request_id for r in requests]
        self.answers: list[pb.VerifyResponse | None] = [None] * len(requests)
        for i, request in enumerate(requests):
            copy = pb.VerifyRequest()
            copy.CopyFrom(request)
            copy.request_id = f"{prefix}:{i}"
            self.wire.append(copy)
            self.sizes.append(size := copy.ByteSize())
            if size > max_bytes:
                self.answers[i] = pb.VerifyResponse(
                    request_id=request.request_id, verdict=pb.INVALID_REQUEST,
                    message=f"not sent: the request is {size:,} bytes, more than the "
                    f"{max_bytes:,} a message may hold")
        self.duplicates = 0  # answers dropped: an unknown id, or one answered already

    def backoff_after_short_stream(self, attempt: int, retries: int, backoff_s: float) -> float:
        """After a stream that ended with requests unanswered: the pause before attempt
        `attempt + 1`; RuntimeError naming how many are missing once retries are spent."""
        if attempt >= retries:
            raise RuntimeError(f"{len(self.missing())} requests unanswered after retries")
        return _backoff_s(backoff_s, attempt)

    def missing(self) -> list[int]:
        return [i for i, a in enumerate(self.answers) if a is None]

    def accept(self, response: pb.VerifyResponse) -> bool:
        """Store an answer; False for an unknown or repeated id."""
        try:
            index = int(response.request_id.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            return False
        if not 0 <= index < len(self.answers) or self.answers[index] is not None:
            self.duplicates += 1
            return False
        response.request_id = self.caller_ids[index]
        self.answers[index] = response
        return True


class VerifierClient(Verifier):
    """`retries`: attempts after the first on UNAVAILABLE or RESOURCE_EXHAUSTED, with
    exponential backoff from `backoff_s`; before one after UNAVAILABLE, a bounded wait
    (`connect_timeout_s`, None: $RESTEM_CONNECT_TIMEOUT or 30) for the server to answer."""

    def __init__(self, target: str | list[str], *, token: str | None = None,
                 tls: Tls | bool | None = None, max_in_flight: int = 256, retries: int = 8,
                 backoff_s: float = 0.2, max_message_mb: int = 64,
                 connect_timeout_s: float | None = None) -> None:
        self.connect_timeout_s = _connect_timeout(connect_timeout_s)
        self.channel, self.stub, self.metadata = _connect(target, token, tls,
                                                          max_message_mb)
        self.target = _describe(target)
        self.max_in_flight, self.retries, self.backoff_s = max_in_flight, retries, backoff_s
        self.max_message_bytes = max_message_mb * 2**20

    def _wait_for_server(self, cause: grpc.RpcError, clock: _CallClock) -> None:
        """Return once a server answers a GetInfo probe (with any status but UNAVAILABLE or
        DEADLINE_EXCEEDED); after `connect_timeout_s`, raise VerifierUnavailable."""
        wait = _Wait(self.target, self.connect_timeout_s, cause, clock)
        while True:
            try:
                self.stub.GetInfo(pb.GetInfoRequest(), metadata=self.metadata,
                                  timeout=wait.probe_timeout_s())
                return
            except grpc.RpcError as exc:
                if exc.code() not in UNREACHABLE:
                    return  # a server answered; the real call meets its refusal, if any
                time.sleep(wait.failed(exc))

    def _recover(self, exc: grpc.RpcError, attempt: int, clock: _CallClock) -> None:
        """After attempt `attempt` (from 0) failed with `exc`: raise it when it is final,
        else back off and, if the server was unavailable, wait (bounded) for it."""
        if not _retryable(exc) or attempt >= self.retries:
            raise exc
        time.sleep(clock.cap(_backoff_s(self.backoff_s, attempt)))
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            self._wait_for_server(exc, clock)

    def _retrying(self, call, clock: _CallClock):
        for attempt in itertools.count():
            try:
                return call()
            except grpc.RpcError as exc:
                self._recover(exc, attempt, clock)

    # Calls fail fast (no wait_for_ready): waiting for a server is the bounded wait's job.
    def verify(
        self, request: pb.VerifyRequest, timeout_s: float | None = None
    ) -> pb.VerifyResponse:
        clock = _CallClock(timeout_s)
        try:
            return self._retrying(
                lambda: self.stub.Verify(request, timeout=clock.left(), metadata=self.metadata),
                clock)
        except VerifyTimeout:
            raise
        except grpc.RpcError as exc:
            _timed_out(exc, timeout_s)
            raise

    def info(self) -> VerifierInfo:
        return info_from_pb(self._retrying(
            lambda: self.stub.GetInfo(pb.GetInfoRequest(), metadata=self.metadata),
            _CallClock(None)))

    def check_many(self, checks: Sequence[Check], *, progress: bool = False,
                   timeout_s: float | None = None) -> list[CheckResult]:
        """Every check answered once, in input order."""
        responses = self.verify_many([to_request(c) for c in checks], progress=progress,
                                     timeout_s=timeout_s)
        return [to_result(r) for r in responses]

    def verify_many(self, requests: Iterable[pb.VerifyRequest], *, progress: bool = False,
                    timeout_s: float | None = None) -> list[pb.VerifyResponse]:
        """Every wire request answered once, in input order."""
        batch = _Batch(list(requests), _request_limit(self.max_message_bytes))
        clock = _CallClock(timeout_s)
        with tqdm(total=len(batch.wire), disable=not progress, unit="req",
                  desc="verify") as bar:
            for attempt in itertools.count():
                if not (missing := batch.missing()):
                    break
                try:
                    self._stream(batch, missing, bar, clock.left())
                except grpc.RpcError as exc:
                    _timed_out(exc, timeout_s)
                    self._recover(exc, attempt, clock)
                    continue
                if batch.missing():  # the stream ended early: counts as an attempt too
                    time.sleep(batch.backoff_after_short_stream(attempt, self.retries,
                                                                self.backoff_s))
        return batch.answers  # type: ignore[return-value]

    def _stream(self, batch: _Batch, indices: list[int], bar: tqdm, timeout_s) -> None:
        slots = threading.Semaphore(self.max_in_flight)
        done = threading.Event()

        pack_bytes = self.max_message_bytes // 2

        def outgoing() -> Iterator[pb.VerifyBatch]:
            position = 0
            while position < len(indices):
                while not slots.acquire(timeout=0.2):  # wait for the first free slot
                    if done.is_set():
                        return
                group = [batch.wire[indices[position]]]
                size = batch.sizes[indices[position]]
                position += 1
                while (position < len(indices) and len(group) < PACK
                       and size + batch.sizes[indices[position]] <= pack_bytes
                       and slots.acquire(blocking=False)):  # and take what else is free
                    group.append(batch.wire[indices[position]])
                    size += batch.sizes[indices[position]]
                    position += 1
                yield pb.VerifyBatch(requests=group)

        call = self.stub.VerifyBatches(outgoing(), timeout=timeout_s, metadata=self.metadata)
        try:
            for result in call:
                slots.release(len(result.responses))
                for response in result.responses:
                    if batch.accept(response):
                        bar.update(1)
        finally:
            done.set()
            call.cancel()

    def close(self) -> None:
        self.channel.close()


class AsyncVerifierClient:
    """The same client for asyncio code: each call is `VerifierClient`'s, run in a thread,
    so both have one implementation (retries, the bounded wait, timeouts, the stream).
    A cancelled call's thread ends when its call does, or when `close` closes the channel.

        async with AsyncVerifierClient("127.0.0.1:50051") as client:
            results = await client.check_many(checks)
    """

    def __init__(self, target: str | list[str], **options) -> None:
        self.client = VerifierClient(target, **options)
        # Threads of its own, as many as requests may be in flight: asyncio's default
        # executor has a few per core, which would cap concurrent calls at that.
        self._threads = ThreadPoolExecutor(max_workers=self.client.max_in_flight,
                                           thread_name_prefix="verifier-client")

    async def _call(self, method, *args, **kwargs):
        call = functools.partial(method, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def check_many(self, checks: Sequence[Check], *, progress: bool = False,
                         timeout_s: float | None = None) -> list[CheckResult]:
        """Check records in, their results out, in order."""
        return await self._call(self.client.check_many, checks, progress=progress,
                                timeout_s=timeout_s)

    async def info(self) -> VerifierInfo:
        return await self._call(self.client.info)

    async def close(self) -> None:
        self.client.close()  # ends the calls still running in threads
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> AsyncVerifierClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
