"""Continuous-batching stand-in for TGI's v3 backend (queue + batcher + shards).

One asyncio task plays the batching loop: it pulls requests from the queue into the running
batch with a prefill (which pauses decoding, like the real thing), then runs decode steps in
which every running sequence gains a token. Admission follows TGI's rules: a token budget
(``max_batch_total_tokens`` reserved as input + max_new_tokens per request), a prefill budget,
``waiting_served_ratio`` and ``max_waiting_tokens``.

Time model: one decode step per token latency ``L`` (``1 / SIM_TOKENS_PER_SECOND`` per sequence).
Steps shorter than ``MIN_STEP`` are merged (several tokens per wake-up) so CPU use stays flat at
high rates; ``L == 0`` makes generation instant. Prefill takes ``L + input / prefill rate``.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass

from .metrics import TgiMetrics

MIN_STEP = 0.004  # seconds; below this, decode steps are merged


@dataclass(slots=True, eq=False)
class Sequence:
    input_length: int
    max_new_tokens: int  # reserved in the token budget
    n_tokens: int  # tokens this request will generate (including a final EOS token)
    finish_reason: str  # length | eos_token | stop_sequence
    offset: int  # where the deterministic answer starts in the vocabulary
    stream: bool
    fail: bool = False
    queued_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    emitted: int = 0
    done: bool = False
    error: str | None = None
    cancelled: bool = False
    waiter: asyncio.Future[None] | None = None

    @property
    def cost(self) -> int:
        return self.input_length + self.max_new_tokens

    def wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    async def wait_progress(self, seen: int) -> None:
        """Return once more than ``seen`` tokens exist or the sequence ended."""
        while self.emitted <= seen and not self.done:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter

    def cancel(self) -> None:
        # Client went away: the batcher drops it at its next step (TGI: err="dropped").
        self.cancelled = True
        self.wake()


class Engine:
    def __init__(
        self,
        metrics: TgiMetrics,
        *,
        token_latency: float,
        prefill_tokens_per_second: float,
        max_batch_total_tokens: int,
        max_batch_prefill_tokens: int,
        max_batch_size: int | None,
        waiting_served_ratio: float,
        max_waiting_tokens: int,
        supports_chunking: bool,
        error_rate: float = 0.0,
        error_message: str = "Server error: CUDA error: an illegal memory access was encountered",
    ) -> None:
        self.m = metrics
        self.latency = max(0.0, token_latency)
        self.prefill_rate = prefill_tokens_per_second
        self.max_batch_total_tokens = max_batch_total_tokens
        self.max_batch_prefill_tokens = max_batch_prefill_tokens
        self.max_batch_size = max_batch_size
        self.ratio = waiting_served_ratio
        self.max_waiting_tokens = max_waiting_tokens
        self.chunking = supports_chunking
        self.error_rate = error_rate
        self.error_message = error_message
        self.queue: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.generation_healthy = True
        self._n_generations = 0
        self._wake = asyncio.Event()
        self._vclock = 0.0
        self._task: asyncio.Task[None] | None = None
        self.step_tokens = 1 if self.latency == 0 else max(1, math.ceil(MIN_STEP / self.latency))
        metrics.batch_max_total_tokens.set(max_batch_total_tokens)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    # --- queue side -------------------------------------------------------------------------

    def submit(self, seq: Sequence) -> None:
        # Deterministic fault injection: exactly `error_rate` of the generations fail.
        n = self._n_generations
        self._n_generations = n + 1
        if self.error_rate > 0:
            seq.fail = math.floor((n + 1) * self.error_rate) > math.floor(n * self.error_rate)
        seq.queued_at = asyncio.get_running_loop().time()
        self.queue.append(seq)
        self.m.queue_size.inc(1.0)
        self._wake.set()

    def _next_batch(self, min_size: int | None) -> list[Sequence] | None:
        if min_size and len(self.queue) < min_size:
            return None
        budget = self.max_batch_total_tokens - sum(s.cost for s in self.running)
        max_size = None
        if self.max_batch_size is not None:
            max_size = self.max_batch_size - len(self.running)
            if max_size <= 0:
                return None
        batch: list[Sequence] = []
        prefill_tokens = decode_tokens = 0
        while self.queue:
            s = self.queue[0]
            if s.cancelled:
                self.queue.popleft()
                self.m.request_failure.inc(err="dropped")
                s.done = True
                continue
            next_prefill = prefill_tokens + s.input_length
            if next_prefill > self.max_batch_prefill_tokens and not (self.chunking and not batch):
                break
            if next_prefill + decode_tokens + s.max_new_tokens > budget:
                break
            if max_size is not None and len(batch) >= max_size:
                break
            self.queue.popleft()
            batch.append(s)
            prefill_tokens = next_prefill
            decode_tokens += s.max_new_tokens
        self.m.queue_size.set(float(len(self.queue)))
        if not batch:
            return None
        if min_size and len(batch) < min_size:
            self.queue.extendleft(reversed(batch))
            self.m.queue_size.set(float(len(self.queue)))
            return None
        self.m.batch_next_size.observe(float(len(batch)))
        return batch

    # --- batching loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        waiting_steps = 0
        while True:
            if not self.running and not self.queue:
                self._wake.clear()
                await self._wake.wait()
            batch = None
            if self.queue:
                if not self.running:
                    batch = self._next_batch(None)
                    concat = None
                else:
                    exceeded = waiting_steps >= self.max_waiting_tokens
                    min_size = None if exceeded else math.floor(len(self.running) * self.ratio)
                    batch = self._next_batch(min_size)
                    concat = "wait_exceeded" if exceeded else "backpressure"
                if batch:
                    if concat is not None:
                        self.m.batch_concat.inc(reason=concat)
                    await self._prefill(batch)
                    waiting_steps = 0
            if self.running:
                await self._decode()
                waiting_steps += 1
            elif self.queue and not batch:
                # Head of the queue does not fit yet and nothing runs: wait for new arrivals.
                # (After a prefill that finished every sequence, newcomers are served at once.)
                self._wake.clear()
                await self._wake.wait()

    def _update_gauges(self) -> None:
        self.m.batch_current_size.set(float(len(self.running)))
        self.m.batch_current_max_tokens.set(float(sum(s.cost for s in self.running)))

    async def _prefill(self, batch: list[Sequence]) -> None:
        loop = asyncio.get_running_loop()
        m = self.m
        start = loop.time()
        for s in batch:
            s.started_at = start
        m.batch_inference_count.inc(method="prefill")
        forward = 0.0
        if self.latency > 0:
            forward = self.latency + sum(s.input_length for s in batch) / self.prefill_rate
            await asyncio.sleep(forward)
        else:
            await asyncio.sleep(0)
        now = loop.time()
        failed = False
        for s in batch:
            if s.cancelled:
                m.request_failure.inc(err="dropped")
                s.done = True
                s.finished_at = now
                continue
            if s.fail:
                failed = True
                s.error = self.error_message
                s.done = True
                s.finished_at = now
                s.wake()
                continue
            s.emitted = 1
            if s.emitted >= s.n_tokens:
                s.done = True
                s.finished_at = now
            else:
                self.running.append(s)
            if s.stream or s.done:
                s.wake()
        if failed:
            # TGI discards the whole batch on a shard error; we only fail the chosen requests.
            m.batch_inference_failure.inc(method="prefill")
            self.generation_healthy = False
        else:
            self.generation_healthy = True
            m.batch_forward_duration.observe(forward, method="prefill")
            m.batch_decode_duration.observe(0.0, method="prefill")
            m.batch_filter_duration.observe(loop.time() - now, method="prefill")
            m.batch_inference_duration.observe(loop.time() - start, method="prefill")
            m.batch_inference_success.inc(method="prefill")
        self._vclock = loop.time()
        self._update_gauges()

    async def _decode(self) -> None:
        loop = asyncio.get_running_loop()
        m = self.m
        start = loop.time()
        latency = self.latency
        if latency == 0:
            k = max(s.n_tokens - s.emitted for s in self.running)
            await asyncio.sleep(0)
        else:
            k = self.step_tokens
            target = self._vclock + k * latency
            delay = target - start
            if delay > 0:
                await asyncio.sleep(delay)
            behind = loop.time() - target
            if behind >= latency:
                # The event loop was late: emit the tokens that were due (bounded catch-up).
                extra = min(int(behind / latency), 4 * k)
                k += extra
                target += extra * latency
            self._vclock = target
        now = loop.time()
        m.batch_inference_count.inc(k, method="decode")
        keep: list[Sequence] = []
        for s in self.running:
            if s.cancelled:
                m.request_failure.inc(err="dropped")
                s.done = True
                s.finished_at = now
                continue
            s.emitted = min(s.n_tokens, s.emitted + k)
            if s.emitted >= s.n_tokens:
                s.done = True
                s.finished_at = now
                s.wake()
            else:
                keep.append(s)
                if s.stream:
                    s.wake()
        self.running = keep
        per_step = (now - start) / k if k else 0.0
        m.batch_forward_duration.observe(per_step, n=k, method="decode")
        m.batch_decode_duration.observe(0.0, n=k, method="decode")
        m.batch_filter_duration.observe(loop.time() - now, method="decode")
        m.batch_inference_duration.observe(per_step, n=k, method="decode")
        m.batch_inference_success.inc(k, method="decode")
        self._update_gauges()
