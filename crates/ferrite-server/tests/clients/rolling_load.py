"""Load for the rolling-restart test: CONCURRENCY clients of the official `openai` package
(AsyncOpenAI, retries off, so every error the balancer lets through is seen) send chat
completions, alternately streamed and whole, until the file STOP_FILE exists (or DURATION
seconds, a bound, have passed); requests under way then run to their end.

Every answer is checked complete: a whole one has its message, finish_reason and usage; a
stream ends with the chunk carrying finish_reason and usage, then `[DONE]` (the client stops at
`[DONE]`; a stream cut before it raises or lacks its finish chunk).

Prints one JSON line: served, failures (with the first errors), and latency percentiles.
Environment: OPENAI_BASE_URL, MODEL, CONCURRENCY, STOP_FILE, DURATION, MAX_TOKENS.
"""

import asyncio
import json
import os
import sys
import time

from openai import AsyncOpenAI

MODEL = os.environ.get("MODEL", "smol")
CONCURRENCY = int(os.environ.get("CONCURRENCY", "64"))
DURATION = float(os.environ.get("DURATION", "60"))
STOP_FILE = os.environ.get("STOP_FILE")
MAX_TOKENS = int(os.environ.get("MAX_TOKENS", "8"))
TOPICS = ["the sea", "a cat", "Paris", "rain", "a robot", "bread", "the moon", "music"]


async def whole(client, i):
    r = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Say something about {TOPICS[i % len(TOPICS)]}."}],
        max_tokens=MAX_TOKENS,
        temperature=0.7,
        seed=i,
    )
    c = r.choices[0]
    if not isinstance(c.message.content, str) or c.finish_reason not in ("stop", "length"):
        raise AssertionError(f"incomplete answer: {r.model_dump_json()}")
    if r.usage is None or r.usage.completion_tokens < 1:
        raise AssertionError(f"no usage: {r.model_dump_json()}")


async def streamed(client, i):
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Tell me about {TOPICS[i % len(TOPICS)]}."}],
        max_tokens=MAX_TOKENS,
        temperature=0.7,
        seed=i,
        stream=True,
    )
    finish = None
    chunks = 0
    async for event in stream:
        chunks += 1
        for c in event.choices:
            if c.finish_reason is not None:
                finish = event
    if finish is None:
        raise AssertionError(f"stream ended without a finish_reason after {chunks} chunks")
    if finish.usage is None or finish.usage.completion_tokens < 1:
        raise AssertionError(f"finish chunk without usage: {finish.model_dump_json()}")


async def worker(client, w, deadline, latencies, failures, kinds):
    i = w
    while time.monotonic() < deadline and not (STOP_FILE and os.path.exists(STOP_FILE)):
        kind = "stream" if i % 2 else "whole"
        started = time.monotonic()
        try:
            await (streamed if kind == "stream" else whole)(client, i)
            latencies.append(time.monotonic() - started)
            kinds[kind] += 1
        except Exception as e:  # every failure counts, whatever raised it
            failures.append(f"{kind}: {type(e).__name__}: {e}"[:400])
        i += CONCURRENCY


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def main():
    client = AsyncOpenAI(api_key="none", max_retries=0, timeout=180.0)
    deadline = time.monotonic() + DURATION
    latencies, failures, kinds = [], [], {"stream": 0, "whole": 0}
    started = time.monotonic()
    await asyncio.gather(*(worker(client, w, deadline, latencies, failures, kinds) for w in range(CONCURRENCY)))
    report = {
        "served": len(latencies),
        "streamed": kinds["stream"],
        "whole": kinds["whole"],
        "failures": len(failures),
        "first_failures": failures[:10],
        "seconds": round(time.monotonic() - started, 1),
        "p50_s": round(percentile(latencies, 50) or 0, 3),
        "p99_s": round(percentile(latencies, 99) or 0, 3),
        "concurrency": CONCURRENCY,
    }
    print(json.dumps(report))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
