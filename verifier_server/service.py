"""The gRPC face of the `Verifier` core: servicer, admission control, auth and metrics.

Protobuf stops here: `answer` reads each request into its check record (`wire.from_request`,
plus what only the wire holds: the request id and max_processes), has the core check the
records, and writes each result back as a response with its request's id.

- `Verify`: one request; a malformed one is INVALID_ARGUMENT (the message names the field);
  a full queue is RESOURCE_EXHAUSTED; an empty program is a NO_ANSWER response.
- `VerifyStream`: responses as they finish, matched by request_id; `VerifyBatches` the same
  with many requests and responses per message (gRPC's cost is per message; README has the
  bench/server_load.py figures); the client library uses it. A malformed item comes back as
  an INVALID_REQUEST response (the stream goes on). When the queue is full the stream stops
  reading (HTTP/2 flow control pushes back on the client) instead of growing.
  Math and exact items that arrive together are checked as one batch; code items run one
  by one on the sandbox pool. When the client goes away, queued work is cancelled.
- Deadlines: the RPC deadline and each request's timeout_s flow into the sandbox kill timers.
- Hostile load: code jobs and math/exact batches run on separate thread pools (a flood of
  programs that spin never delays an answer that needs no sandbox), and each pool is entered
  in turn by client connection (`FairGate`), as is the symbolic math pool, so one client's
  queue delays another's request by at most one job per client ahead of it. A stream stops
  reading while its finished answers are not being read (a client that sends faster than it
  reads holds a bounded buffer), and an answer message stays under the message limit.
  A request that breaks something inside is answered SANDBOX_ERROR; the stream goes on.
- `BearerToken`: an interceptor that answers UNAUTHENTICATED without the right
  `authorization: Bearer <token>` metadata (health checks stay open for probes).
- `Metrics`: Prometheus counters per kind and verdict, latency histograms, queue depth and
  busy sandboxes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from evals.checks import Check, CheckResult, InvalidCheck, Verdict
from restem_proto.v1 import verifier_pb2 as pb
from restem_proto.v1 import verifier_pb2_grpc as pb_grpc
from verifier_server.core import Job, NoAnswer, Verifier, internal_error
from verifier_server.wire import from_request, info_to_pb, to_response

log = logging.getLogger(__name__)

BATCH = 256  # math/exact items checked together when they arrive together
COALESCE_S = 0.002  # responses finishing this close together share a message
CHECK_THREADS = 64  # math/exact batches at once: they mostly wait on the math worker pool
STREAM_WINDOW = 2048  # requests a stream may have admitted and not yet answered
STREAM_BUFFER_BYTES = 32 << 20  # finished answers a stream holds while its client reads none
GROUP_BYTES = 8 << 20  # answers put in one stream message at most (the limit is 64 MiB)
MAX_REQUEST_ID_CHARS = 1_024


def decode(request: pb.VerifyRequest, max_processes: int) -> Check:
    """The check a request carries, or InvalidCheck naming the field: the wire's own fields
    are judged here (a request id past MAX_REQUEST_ID_CHARS, more processes than the
    server's), the rest by `wire.from_request` and the record."""
    if len(request.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidCheck(f"request_id: longer than {MAX_REQUEST_ID_CHARS} characters")
    processes = request.code.limits.max_processes
    if not 0 <= processes <= max_processes:
        raise InvalidCheck(f"code.limits.max_processes: this server allows 0 to "
                           f"{max_processes}")
    return from_request(request)


def answer(verifier: Verifier, requests: list[pb.VerifyRequest],
           deadline: float | None = None, flow: Hashable = None) -> list[pb.VerifyResponse]:
    """Responses to wire requests, in order: each decoded (one that cannot be is answered
    INVALID_REQUEST naming the field), the checks answered by the core, each result sent
    with its request's id (an oversized id cut short)."""
    results: list[CheckResult | None] = [None] * len(requests)
    checks: list[tuple[int, Check]] = []
    for i, request in enumerate(requests):
        started = time.monotonic()
        try:
            checks.append((i, decode(request, verifier.max_processes)))
        except InvalidCheck as exc:
            results[i] = CheckResult(Verdict.INVALID_REQUEST, message=str(exc),
                                     elapsed_ms=(time.monotonic() - started) * 1000)
        except Exception as exc:  # a bug reading some input: that request's answer only
            results[i] = internal_error(request, exc)
    checked = verifier.check_many([check for _, check in checks], deadline, flow)
    for (i, _), result in zip(checks, checked, strict=True):
        results[i] = result
    return [_encode(request, result)  # type: ignore[arg-type]
            for request, result in zip(requests, results, strict=True)]


def _encode(request: pb.VerifyRequest, result: CheckResult) -> pb.VerifyResponse:
    """The response to one request, with its id cut to MAX_REQUEST_ID_CHARS; a result the
    wire cannot carry is that request's SANDBOX_ERROR, never its batch's."""
    request_id = request.request_id[:MAX_REQUEST_ID_CHARS]
    try:
        return to_response(result, request_id)
    except Exception as exc:
        return to_response(internal_error(request, exc), request_id)


class FairGate:
    """At most `slots` holders at once; waiters are let in one flow (client) at a time, in
    turn, so a flow with many waiters delays another flow's waiter by at most one entry per
    flow ahead of it. For asyncio; not thread-safe."""

    def __init__(self, slots: int) -> None:
        self.free = slots
        self._waiting: OrderedDict[Hashable, deque[asyncio.Future]] = OrderedDict()

    async def acquire(self, flow: Hashable) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(flow, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # let in just as it was cancelled: pass the slot on
            else:
                waiting = self._waiting.get(flow)
                if waiting is not None and future in waiting:
                    waiting.remove(future)
                    if not waiting:
                        del self._waiting[flow]
            raise

    def release(self) -> None:
        while self._waiting:
            flow, waiting = next(iter(self._waiting.items()))
            future = waiting.popleft()
            if waiting:
                self._waiting.move_to_end(flow)
            else:
                del self._waiting[flow]
            if not future.done():
                future.set_result(None)
                return
        self.free += 1


class Metrics:
    def __init__(self, verifier: Verifier, in_flight) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("restem_verify_requests", "Verified requests",
                                ["kind", "verdict"], registry=self.registry)
        self.latency = Histogram("restem_verify_latency_seconds",
                                 "Time per request, queue included", ["kind"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                          10, 30, 60))
        queue = Gauge("restem_queue_depth", "Requests admitted and not answered yet",
                      registry=self.registry)
        queue.set_function(in_flight)
        busy = Gauge("restem_sandbox_busy", "Sandbox workers running a job", registry=self.registry)
        busy.set_function(lambda: verifier.sandbox.info()["busy"] if verifier.sandbox else 0)
        self._counters: dict = {}
        self._histograms: dict = {}

    def observe(self, request: pb.VerifyRequest, resp: pb.VerifyResponse, seconds: float) -> None:
        kind = request.WhichOneof("task") or "none"
        key = (kind, resp.verdict)
        counter = self._counters.get(key)
        if counter is None:  # labels() is slow; keep each child
            verdict = pb.Verdict.Name(resp.verdict)
            counter = self._counters[key] = self.requests.labels(kind, verdict)
        histogram = self._histograms.get(kind)
        if histogram is None:
            histogram = self._histograms[kind] = self.latency.labels(kind)
        counter.inc()
        histogram.observe(seconds)


class VerifierService(pb_grpc.VerifierServicer):
    """`threads`: code jobs at once (they block a thread while their program runs)."""

    def __init__(self, verifier: Verifier, threads: int, max_queue: int,
                 check_threads: int = CHECK_THREADS) -> None:
        self.verifier = verifier
        self.max_queue = max_queue
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verify-code")
        self.check_executor = ThreadPoolExecutor(max_workers=check_threads,
                                                 thread_name_prefix="verify")
        self._gates = {"code": FairGate(threads), "check": FairGate(check_threads)}
        self.in_flight = 0
        self.draining = False  # set on SIGTERM
        self._capacity: asyncio.Condition | None = None
        self.metrics = Metrics(verifier, lambda: self.in_flight)

    def shutdown(self) -> None:
        for executor in (self.executor, self.check_executor):
            executor.shutdown(wait=True, cancel_futures=True)

    def _condition(self) -> asyncio.Condition:
        if self._capacity is None:
            self._capacity = asyncio.Condition()
        return self._capacity

    async def _release(self, count: int) -> None:
        async with self._condition():
            self.in_flight -= count
            self._condition().notify_all()

    async def _run(self, requests: list[pb.VerifyRequest], deadline: float | None,
                   admitted: float, flow: Hashable, job: Job | None = None
                   ) -> list[pb.VerifyResponse]:
        """Verify `requests` on a thread pool, entered in turn by `flow`; `job`: the one
        request, validated already. Never raises for what the requests hold: a failure
        inside answers each request SANDBOX_ERROR."""
        loop = asyncio.get_running_loop()
        code = requests[0].WhichOneof("task") == "code"
        gate = self._gates["code" if code else "check"]
        if job is None:
            work = partial(answer, self.verifier, requests, deadline, flow)
        else:
            work = partial(self._run_job, job, requests[0], deadline, flow)
        await gate.acquire(flow)
        try:
            started = time.monotonic()
            responses = await loop.run_in_executor(
                self.executor if code else self.check_executor, work)
        except Exception as exc:  # a bug on some input: answered, never a lost stream
            responses = [_encode(r, internal_error(r, exc)) for r in requests]
        finally:
            gate.release()
        done = time.monotonic()
        for request, resp in zip(requests, responses, strict=True):
            resp.queue_ms = (started - admitted) * 1000
            self.metrics.observe(request, resp, done - admitted)
        return responses

    def _run_job(self, job: Job, request: pb.VerifyRequest, deadline: float | None,
                 flow: Hashable) -> list[pb.VerifyResponse]:
        (result,) = self.verifier.run([job], deadline, flow)
        return [_encode(request, result)]

    def _validate(self, request: pb.VerifyRequest) -> Job:
        return self.verifier.validate(decode(request, self.verifier.max_processes))

    @staticmethod
    def _deadline(context: grpc.aio.ServicerContext) -> float | None:
        left = context.time_remaining()
        return None if left is None else time.monotonic() + left

    async def _refuse_when_draining(self, context) -> None:
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the verifier is shutting down")

    async def Verify(self, request, context):
        await self._refuse_when_draining(context)
        async with self._condition():
            if self.in_flight >= self.max_queue:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"the verifier queue is full ({self.max_queue} requests)")
            self.in_flight += 1
        try:
            # Off the event loop: reading call tests parses JSON (bounded, not free).
            job = await asyncio.get_running_loop().run_in_executor(
                self.check_executor, self._validate, request)
        except InvalidCheck as exc:
            await self._release(1)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except NoAnswer:
            job = None  # a wrong answer: the batch path answers it NO_ANSWER and counts it
        except Exception as exc:
            await self._release(1)
            return _encode(request, internal_error(request, exc))
        try:
            (resp,) = await self._run([request], self._deadline(context), time.monotonic(),
                                      context.peer(), job)
            return resp
        finally:
            await self._release(1)

    async def VerifyStream(self, request_iterator, context):
        await self._refuse_when_draining(context)

        async def singles():
            async for request in request_iterator:
                yield [request]

        async for group in self._stream(singles(), context):
            for response in group:
                yield response

    async def VerifyBatches(self, batch_iterator, context):
        await self._refuse_when_draining(context)

        async def lists():
            async for batch in batch_iterator:
                yield list(batch.requests)

        async for group in self._stream(lists(), context):
            yield pb.VerifyBatchResult(responses=group)

    def _stream(self, incoming, context):
        return _Stream(self, incoming, self._deadline(context), context.peer()).answers()

    async def GetInfo(self, request, context):
        return info_to_pb(replace(self.verifier.info(), max_queue=self.max_queue,
                                  in_flight=self.in_flight))


class _Stream:
    """One stream's work: lists of requests in (`read`), math and exact requests gathered
    into batches (`dispatch`), each batch or code request checked (`work`), and lists of
    finished responses out (`answers`). Work moves in lists, not items: asyncio costs tens
    of microseconds per queue operation."""

    def __init__(self, servicer: VerifierService, incoming, deadline: float | None,
                 flow: Hashable) -> None:
        self.servicer, self.incoming = servicer, incoming
        self.deadline, self.flow = deadline, flow
        self.out: asyncio.Queue = asyncio.Queue()  # lists of responses; None at the end
        self.pending: asyncio.Queue = asyncio.Queue()  # lists of math and exact requests
        self.batches = asyncio.Semaphore(2)  # math/exact batches running at once
        self.tasks: set[asyncio.Task] = set()
        # Requests admitted and not yet handed to gRPC, and the bytes of finished answers
        # waiting: reading stops while either is at its limit.
        self.open, self.bytes = 0, 0
        self.moved = asyncio.Condition()

    def spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def work(self, batch: list[pb.VerifyRequest], admitted: float, slot: bool) -> None:
        try:
            responses = await self.servicer._run(batch, self.deadline, admitted, self.flow)
            self.bytes += sum(r.ByteSize() for r in responses)
            self.out.put_nowait(responses)
        finally:
            await self.servicer._release(len(batch))
            if slot:
                self.batches.release()

    async def read(self) -> None:
        servicer = self.servicer
        async for requests in self.incoming:
            async with self.moved:  # this client reads its answers, or it is not read
                await self.moved.wait_for(lambda: self.open < STREAM_WINDOW
                                          and self.bytes < STREAM_BUFFER_BYTES)
                self.open += len(requests)
            async with servicer._condition():  # backpressure, not an unbounded queue
                await servicer._condition().wait_for(
                    lambda: servicer.in_flight < servicer.max_queue)
                servicer.in_flight += len(requests)  # may pass max_queue by one message
            now = time.monotonic()
            others = []
            for request in requests:
                if request.WhichOneof("task") == "code":
                    self.spawn(self.work([request], now, slot=False))
                else:
                    others.append(request)
            if others:
                self.pending.put_nowait(others)
        self.pending.put_nowait(None)

    async def dispatch(self, reading: asyncio.Task) -> None:
        """While a batch runs, the next one fills up; it goes out when a slot frees."""
        finished = False
        while not finished:
            first = await self.pending.get()
            if first is None:
                break
            await self.batches.acquire()
            batch = list(first)
            while len(batch) < BATCH and not self.pending.empty():
                more = self.pending.get_nowait()
                if more is None:
                    finished = True
                    break
                batch += more
            self.spawn(self.work(batch, time.monotonic(), slot=True))
        await asyncio.gather(reading, return_exceptions=True)
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        self.out.put_nowait(None)

    async def answers(self):
        """Lists of finished responses, what finishes within COALESCE_S of each other in
        one list, each list under GROUP_BYTES."""
        reading = asyncio.create_task(self.read())
        dispatcher = asyncio.create_task(self.dispatch(reading))
        try:
            finished = False
            while not finished:
                group = await self.out.get()
                if group is None:
                    break
                size = sum(r.ByteSize() for r in group)
                until = time.monotonic() + COALESCE_S
                while (len(group) < BATCH and size < GROUP_BYTES
                       and (left := until - time.monotonic()) > 0):
                    try:
                        more = await asyncio.wait_for(self.out.get(), left)
                    except TimeoutError:
                        break
                    if more is None:
                        finished = True
                        break
                    group = group + more
                    size += sum(r.ByteSize() for r in more)
                for part in _parts(group):
                    yield part
                async with self.moved:
                    self.open -= len(group)
                    self.bytes -= size
                    self.moved.notify_all()
            await reading  # surfaces a reading error
        finally:
            reading.cancel()
            dispatcher.cancel()
            for task in list(self.tasks):
                task.cancel()  # queued work of a client that went away never starts


class BearerToken(grpc.aio.ServerInterceptor):
    STREAMING = ("/restem.verifier.v1.Verifier/VerifyStream",
                 "/restem.verifier.v1.Verifier/VerifyBatches",
                 "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                 "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        async def deny_stream(request_iterator, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            yield  # pragma: no cover  (makes this an async generator)

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny_stream)

    async def intercept_service(self, continuation, details):
        if details.method.startswith("/grpc.health.v1.Health/"):
            return await continuation(details)
        given = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(given).encode(), self._expected):
            return await continuation(details)
        return self._deny_stream if details.method in self.STREAMING else self._deny_unary


def _parts(group: list[pb.VerifyResponse]) -> list[list[pb.VerifyResponse]]:
    """The group in pieces of at most GROUP_BYTES (one answer alone may be larger)."""
    parts, part, size = [], [], 0
    for resp in group:
        n = resp.ByteSize()
        if part and size + n > GROUP_BYTES:
            parts.append(part)
            part, size = [], 0
        part.append(resp)
        size += n
    if part:
        parts.append(part)
    return parts
