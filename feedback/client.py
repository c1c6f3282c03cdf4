"""One client for every language-model call: any OpenAI-compatible endpoint.

:class:`ModelClient` wraps the ``openai`` client (hosted APIs, vLLM, Ollama, the
llama.cpp server) with what a long search needs:

- retries with exponential back-off on timeouts, connection errors, HTTP 429 (honouring
  ``Retry-After``) and 5xx; other errors are not retried;
- bounded concurrency for batches (:meth:`ModelClient.chat_many`, a thread pool);
- a request and token budget: :class:`BudgetExhausted` once ``max_requests`` real
  requests were made or ``max_tokens`` tokens (prompt + completion) were used, so a run
  stops cleanly (it is a :class:`qdkit.StopRun`); with ``usage_path`` the counts are
  kept on disk, so a budget holds across resumed runs;
- an on-disk SQLite cache keyed by the full request (model, messages, parameters): a
  repeated or resumed run pays nothing twice;
- usage accounting (``client.usage``: requests, cache hits, retries, failures, tokens).

A failed request returns ``None`` (counted) instead of raising. Base URL, model and key
come from the arguments or ``OPENAI_BASE_URL``, ``OPENAI_MODEL`` and ``OPENAI_API_KEY``;
the key is never printed, logged or written anywhere (``repr`` hides it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from qdkit.map_elites import StopRun

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
#: The usage counters, in ``client.usage`` order.
USAGE = ("requests", "cached", "retries", "failures", "prompt_tokens", "completion_tokens")


class BudgetExhausted(StopRun):
    """The client's request or token budget is spent (a :class:`qdkit.StopRun`: a
    host run stops cleanly after its last complete iteration)."""


@dataclass(frozen=True)
class Reply:
    """A chat completion's first choice: its text and, when the server gave them, the
    top log-probabilities of each generated token (``[{token: logprob, ...}, ...]``)."""

    text: str
    top_logprobs: list[dict[str, float]] | None = None
    finish_reason: str | None = None


class ModelClient:
    """See the module docstring.

    Args:
        base_url, model, api_key: the endpoint (defaults from the environment).
        timeout: seconds per request.
        max_retries: retries after the first attempt.
        backoff: first back-off in seconds (doubled each retry).
        concurrency: requests in flight at once in :meth:`chat_many`.
        max_requests: budget of real (uncached) requests; ``None`` for no limit.
        max_tokens: budget of tokens (prompt + completion, as the server reports
            them); ``None`` for no limit. A request already in flight when it runs out
            completes.
        cache_path: SQLite file for the response cache; ``None`` for no cache.
        cache_scope: what identifies the endpoint in cache keys (default: the base
            URL); e.g. ``"local"`` for a local server whose port changes between runs.
        usage_path: JSON file where the usage counts are kept (read at start, written
            after every request), so budgets and accounting span resumed runs.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        concurrency: int = 4,
        max_requests: int | None = None,
        max_tokens: int | None = None,
        cache_path: str | None = None,
        cache_scope: str | None = None,
        usage_path: str | None = None,
    ):
        import openai

        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.model = model or os.environ.get("OPENAI_MODEL")
        if not self.model:
            raise ValueError("no model: pass model= or set OPENAI_MODEL")
        key = api_key or os.environ.get("OPENAI_API_KEY") or "no-key"
        self._openai = openai
        self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=0)
        self.max_retries, self.backoff = int(max_retries), float(backoff)
        self.concurrency = max(1, int(concurrency))
        self.max_requests = None if max_requests is None else int(max_requests)
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.cache_path = cache_path
        self.cache_scope = cache_scope
        self.usage_path = usage_path
        self._lock = threading.Lock()
        self.usage = {name: 0 for name in USAGE}
        if usage_path and os.path.exists(usage_path):
            try:
                with open(usage_path, encoding="utf-8") as f:
                    saved = json.load(f)
                self.usage.update({k: int(saved[k]) for k in USAGE if k in saved})
            except (OSError, ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{usage_path} is not a usage file: {e}") from e
        if cache_path:
            with sqlite3.connect(cache_path) as db:
                db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def __repr__(self) -> str:
        return f"ModelClient(base_url={self.base_url!r}, model={self.model!r}, api_key=<hidden>)"

    # ------------------------------------------------------------------ cache
    def _key(self, messages: list[dict], params: dict) -> str:
        scope = self.base_url if self.cache_scope is None else self.cache_scope
        request = {"base_url": scope, "model": self.model, "messages": messages, "params": params}
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def _cached(self, key: str) -> dict | None:
        if not self.cache_path:
            return None
        with sqlite3.connect(self.cache_path) as db:
            row = db.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _store(self, key: str, value: dict) -> None:
        if self.cache_path:
            with self._lock, sqlite3.connect(self.cache_path) as db:
                db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, json.dumps(value)))

    # --------------------------------------------------------------- requests
    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.usage[name] += amount
            self._save_usage()

    def _save_usage(self) -> None:  # called with the lock held
        if self.usage_path:
            tmp = f"{self.usage_path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.usage, f)
            os.replace(tmp, self.usage_path)

    @property
    def tokens(self) -> int:
        return self.usage["prompt_tokens"] + self.usage["completion_tokens"]

    def check_budget(self) -> None:
        """Raise :class:`BudgetExhausted` if the request or token budget is spent."""
        if self.max_requests is not None and self.usage["requests"] >= self.max_requests:
            raise BudgetExhausted(f"the request budget ({self.max_requests} requests) is spent")
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise BudgetExhausted(f"the token budget ({self.max_tokens} tokens) is spent")

    def _spend(self) -> None:
        with self._lock:
            self.check_budget()
            self.usage["requests"] += 1
            self._save_usage()

    def _wait(self, attempt: int, error: Exception) -> float:
        response = getattr(error, "response", None)
        retry_after = None if response is None else response.headers.get("retry-after")
        try:
            return max(0.0, float(retry_after))
        except (TypeError, ValueError):
            return self.backoff * 2**attempt

    def chat(self, messages: list[dict], **params: Any) -> Reply | None:
        """One chat completion (cached, retried); ``None`` when it failed."""

        def send() -> dict:
            reply = self._reply(self._client.chat.completions.create(model=self.model, messages=messages, **params))
            return {"text": reply.text, "top_logprobs": reply.top_logprobs, "finish_reason": reply.finish_reason}

        value = self._request(self._key(messages, params), send)
        return None if value is None else Reply(value["text"], value["top_logprobs"], value.get("finish_reason"))

    def embed(self, text: str) -> list[float] | None:
        """The embedding of one text from the endpoint's ``/embeddings`` (cached,
        retried); a server that returns one vector per token (llama.cpp without pooling)
        gets them mean-pooled. ``None`` when it failed."""

        def send() -> dict:
            response = self._client.embeddings.create(model=self.model, input=[text])
            vectors = response.data[0].embedding
            if vectors and isinstance(vectors[0], list):  # one per token
                vectors = [sum(column) / len(vectors) for column in zip(*vectors)]
            vector = [float(v) for v in vectors]
            if not vector or any(v != v for v in vector):
                raise ValueError("an empty or NaN embedding")
            usage = getattr(response, "usage", None)
            if usage is not None:
                self._count("prompt_tokens", int(getattr(usage, "prompt_tokens", 0) or 0))
            return {"embedding": vector}

        value = self._request(self._key([{"embed": text}], {"endpoint": "embeddings"}), send)
        return None if value is None else value["embedding"]

    def embed_many(self, texts: list[str]) -> list[list[float] | None]:
        """:meth:`embed` for each text, ``concurrency`` at a time, in order (budget
        handling as in :meth:`chat_many`)."""
        return self._many([lambda t=t: self.embed(t) for t in texts])

    def _request(self, key: str, send) -> dict | None:
        """``send()`` (one request; returns a JSON-able dict) with the cache, the budget,
        retries and failure counting around it."""
        cached = self._cached(key)
        if cached is not None:
            self._count("cached")
            return cached
        openai = self._openai
        for attempt in range(self.max_retries + 1):
            self._spend()
            try:
                reply = send()
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                error = e
            except openai.APIStatusError as e:
                if e.status_code not in RETRYABLE_STATUS:
                    self._count("failures")
                    return None
                error = e
            except (ValueError, TypeError, AttributeError, IndexError, KeyError):  # a malformed answer
                self._count("failures")
                return None
            else:
                self._store(key, reply)
                return reply
            if attempt < self.max_retries:
                self._count("retries")
                time.sleep(self._wait(attempt, error))
        self._count("failures")
        return None

    def _reply(self, response) -> Reply:
        choice = response.choices[0]
        text = choice.message.content
        if not isinstance(text, str):
            raise ValueError("no text in the reply")
        usage = getattr(response, "usage", None)
        if usage is not None:
            with self._lock:
                self.usage["prompt_tokens"] += int(usage.prompt_tokens or 0)
                self.usage["completion_tokens"] += int(usage.completion_tokens or 0)
                self._save_usage()
        top = None
        logprobs = getattr(choice, "logprobs", None)
        if logprobs is not None and getattr(logprobs, "content", None):
            top = [{t.token: float(t.logprob) for t in (entry.top_logprobs or [])} for entry in logprobs.content]
        return Reply(text, top, getattr(choice, "finish_reason", None))

    def chat_many(
        self, conversations: list[list[dict]], *, each: list[dict] | None = None, **params: Any
    ) -> list[Reply | None]:
        """:meth:`chat` for each conversation, ``concurrency`` at a time, in order.

        ``each`` optionally gives per-conversation parameters (e.g. a sampling
        ``seed``), merged over ``params``.

        Raises :class:`BudgetExhausted` once every request has finished if the budget
        ran out on the way; its ``partial`` attribute holds the replies obtained (``None``
        for the rest). Replies obtained are cached, so a resumed run pays nothing for
        them again."""
        if each is not None and len(each) != len(conversations):
            raise ValueError(f"each has {len(each)} entries for {len(conversations)} conversations")
        extra = each or [{}] * len(conversations)
        return self._many([lambda m=m, x=x: self.chat(m, **{**params, **x}) for m, x in zip(conversations, extra)])

    def _many(self, calls: list) -> list:
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(call) for call in calls]
            replies, exhausted = [], None
            for future in futures:
                try:
                    replies.append(future.result())
                except BudgetExhausted as e:
                    replies.append(None)
                    exhausted = e
        if exhausted is not None:
            exhausted.partial = replies
            raise exhausted
        return replies


class EnvironmentClient:
    """The :class:`ModelClient` of the ``OPENAI_*`` environment, made on first use: a
    text task built without a client (``qdkit.tasks.get("text")``) needs no model until
    it rates something."""

    def __init__(self) -> None:
        self._client: ModelClient | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._client is None:
            self._client = ModelClient()
        return getattr(self._client, name)

    def __repr__(self) -> str:
        return "EnvironmentClient(made on first use from OPENAI_BASE_URL, OPENAI_MODEL, OPENAI_API_KEY)"
