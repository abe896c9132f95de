"""Deterministic "model" and a continuous-batching scheduler shared by the vLLM and SGLang
simulators.

The model answers with real token ids of the deployed tokenizer: words of a fixed list that the
tokenizer encodes as one token each, starting at an offset derived from the prompt, and ends with
the tokenizer's EOS id after ``natural_tokens`` words (finish_reason ``stop``), unless the request's
token limit comes first (``length``). Same prompt, same answer.

The scheduler follows the shape of vllm/v1/core/sched/scheduler.py and
sglang/srt/managers/scheduler.py: a waiting queue, a running batch capped at ``max_running``
(``--max-num-seqs`` / ``--max-running-requests``), admission only while the KV pool (in tokens)
can hold the prompt plus the requested output, prefill taking time proportional to the prompt,
then one token per running sequence per decode step.
"""

from __future__ import annotations

import asyncio
import math
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .weights import ModelTokenizer as Tokenizer

MIN_STEP = 0.004  # seconds; shorter decode steps are merged so CPU use stays flat

_WORDS = (  # noqa: SIM905 - a sentence reads better than a list of 70 strings
    "the model is a simple text that we can use to test how the system works under load and it "
    "will keep going until it is asked to stop or runs out of tokens so you may see words like "
    "data cloud fast slow queue batch token cache plan build ship check run wait green blue one "
    "two three four five six seven eight nine ten river stone light sound paper glass metal water "
    "fire earth wind tree leaf seed root north south east west"
).split()


class Answerer:
    """Turns a prompt into the simulated model's token ids."""

    def __init__(self, tokenizer: Tokenizer, natural_tokens: int) -> None:
        self.tok = tokenizer
        self.natural = natural_tokens
        stops = tokenizer.stop_token_ids
        self.eos_id = stops[0] if stops else tokenizer.eos_token_id
        specials = {tokenizer.bos_token_id, self.eos_id, *tokenizer.special_token_ids}
        ids: list[int] = []
        for word in _WORDS:
            enc = tokenizer.encode(" " + word, add_special_tokens=False)
            if len(enc) == 1 and enc[0] not in specials and enc[0] not in ids:
                ids.append(enc[0])
        if not ids:  # a tokenizer that splits every word: take its pieces
            for word in _WORDS:
                for i in tokenizer.encode(" " + word, add_special_tokens=False):
                    if i not in specials and i not in ids:
                        ids.append(i)
        self.word_ids = ids or [0]

    def answer(self, prompt_ids: Sequence[int], max_tokens: int) -> tuple[list[int], str]:
        """Output ids (EOS included when reached) and the finish reason."""
        seed = zlib.crc32(bytes(str(list(prompt_ids[-64:])), "ascii"))
        n_words = len(self.word_ids)
        eos = self.eos_id
        natural = self.natural if self.natural > 0 else math.inf
        out: list[int] = []
        while len(out) < max_tokens:
            if len(out) >= natural and eos is not None:
                out.append(eos)
                return out, "stop"
            out.append(self.word_ids[(seed + len(out)) % n_words])
        return out, "length"

    def text(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)


def truncate_at_stop(
    answerer: Answerer, ids: list[int], stops: Sequence[str]
) -> tuple[list[int], str | None]:
    """Cut ``ids`` after the first token that completes a stop string (text excludes it)."""
    stops = [s for s in stops if s]
    if not stops:
        return ids, None
    for k in range(1, len(ids) + 1):
        text = answerer.text(ids[:k])
        for s in stops:
            pos = text.find(s)
            if pos >= 0:
                return ids[:k], text[:pos]
    return ids, None


@dataclass(eq=False)
class Request:
    prompt_len: int
    output_ids: list[int]
    reserve: int  # KV tokens held while running
    fail: bool = False
    arrived: float = 0.0
    scheduled: float = 0.0
    first_token: float = 0.0
    finished: float = 0.0
    emitted: int = 0
    done: bool = False
    aborted: bool = False
    error: str | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def progress(self, seen: int) -> None:
        while self.emitted <= seen and not self.done:
            self._event.clear()
            await self._event.wait()

    def wake(self) -> None:
        self._event.set()

    def abort(self) -> None:
        self.aborted = True
        self.wake()


class Scheduler:
    def __init__(
        self,
        *,
        max_running: int,
        kv_pool_tokens: int,
        token_latency: float,
        prefill_tokens_per_second: float,
        error_rate: float = 0.0,
        on_finish: Callable[[Request], None] | None = None,
    ) -> None:
        self.max_running = max_running
        self.kv_pool_tokens = kv_pool_tokens
        self.latency = max(0.0, token_latency)
        self.prefill_rate = prefill_tokens_per_second
        self.error_rate = error_rate
        self.on_finish = on_finish
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.kv_used = 0
        self.generated_since = 0
        self._n = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.step_tokens = 1 if self.latency == 0 else max(1, math.ceil(MIN_STEP / self.latency))

    @property
    def kv_usage(self) -> float:
        return self.kv_used / self.kv_pool_tokens if self.kv_pool_tokens else 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, req: Request) -> None:
        # Deterministic fault injection: exactly `error_rate` of the requests fail.
        n, self._n = self._n, self._n + 1
        if self.error_rate > 0:
            req.fail = math.floor((n + 1) * self.error_rate) > math.floor(n * self.error_rate)
        req.arrived = asyncio.get_running_loop().time()
        req.reserve = min(req.reserve, self.kv_pool_tokens)
        self.waiting.append(req)
        self._wake.set()

    def _admit(self) -> list[Request]:
        batch: list[Request] = []
        while self.waiting and len(self.running) + len(batch) < self.max_running:
            head = self.waiting[0]
            if head.aborted:
                self.waiting.popleft()
                self._finish(head)
                continue
            if self.kv_used + head.reserve > self.kv_pool_tokens:
                break
            self.waiting.popleft()
            self.kv_used += head.reserve
            batch.append(head)
        return batch

    def _finish(self, req: Request) -> None:
        if req in self.running:
            self.running.remove(req)
            self.kv_used -= req.reserve
        req.done = True
        req.finished = asyncio.get_running_loop().time()
        req.wake()
        if self.on_finish is not None:
            self.on_finish(req)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
            batch = self._admit()
            if batch:
                now = loop.time()
                for r in batch:
                    r.scheduled = now
                if self.latency > 0:
                    prompt = sum(r.prompt_len for r in batch)
                    await asyncio.sleep(self.latency + prompt / self.prefill_rate)
                else:
                    await asyncio.sleep(0)
                now = loop.time()
                for r in batch:
                    self.running.append(r)
                    if r.aborted:
                        self._finish(r)
                    elif r.fail:
                        r.error = "simulated engine failure (sim fault `error_rate`)"
                        self._finish(r)
                    else:
                        r.emitted = 1
                        r.first_token = now
                        self.generated_since += 1
                        if r.emitted >= len(r.output_ids):
                            self._finish(r)
                        else:
                            r.wake()
            if self.running:
                await self._decode()
            elif self.waiting and not batch:
                self._wake.clear()
                await self._wake.wait()

    async def _decode(self) -> None:
        k = self.step_tokens
        if self.latency > 0:
            await asyncio.sleep(k * self.latency)
        else:
            k = max(len(r.output_ids) - r.emitted for r in self.running)
            await asyncio.sleep(0)
        for r in list(self.running):
            if r.aborted:
                self._finish(r)
                continue
            step = min(k, len(r.output_ids) - r.emitted)
            r.emitted += step
            self.generated_since += step
            if r.emitted >= len(r.output_ids):
                self._finish(r)
            else:
                r.wake()
