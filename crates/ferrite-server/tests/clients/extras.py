"""Beyond DeepInfra's examples, with the official `openai` Python client against ferrite:
usage in a last chunk (`stream_options`), `n` with chat log-probabilities (streamed and not),
completions with `echo` and `logprobs`, and `seed` reproducibility. Prints `ok NAME` per check
and `### done N checks` at the end; any failure raises (exit status 1).
"""

import os

import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob
from openai.types.completion import Completion

from client_checks import check, done

client = OpenAI(
    api_key=os.environ.get("FERRITE_API_KEY", "none"),
    base_url=os.environ["FERRITE_BASE_URL"] + "/v1/openai",
    max_retries=0,
)
MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
HELLO = [{"role": "user", "content": "Hello"}]


def strict(name, objects):
    """The client builds its objects without validating them: validate each one's fields against
    the client's pydantic types (required fields, types, literals), as a strict client would."""
    for o in objects:
        try:
            type(o).model_validate(o.to_dict())
        except Exception as e:  # pydantic.ValidationError, with every offending field
            raise AssertionError(f"{name}: {o!r} does not validate as {type(o).__name__}: {e}") from None
    check(f"{name}: validates as the client's types", True)


def include_usage():
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=16, stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    check("chat include_usage: chunks", len(chunks) > 2 and all(isinstance(c, ChatCompletionChunk) for c in chunks))
    strict("chat include_usage", chunks)
    check("chat include_usage: last chunk has no choices", last.choices == [], last)
    check("chat include_usage: last chunk has usage", last.usage is not None and last.usage.prompt_tokens > 0
          and last.usage.completion_tokens > 0
          and last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens, last)
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1] if c.choices)
    check("chat include_usage: content streamed", text.strip() != "", chunks)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check("chat include_usage: one finish reason", reasons in (["stop"], ["length"]), reasons)

    # Greedy: sampled at the default temperature 1, the model may end its answer before 8
    # tokens (seen once: 3 tokens), which is not what this case checks.
    chunks = list(client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=8, stream=True, temperature=0,
        stream_options={"include_usage": True}))
    last = chunks[-1]
    # Not `strict`: the client types a streamed completion with the `Completion` model, whose
    # `finish_reason` may not be null, yet OpenAI's own streams send null until the last chunk.
    check("completions include_usage: last chunk", last.choices == [] and last.usage is not None
          and last.usage.completion_tokens == 8, last)


def n_and_logprobs():
    r = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=8, n=2, logprobs=True, top_logprobs=2, temperature=1, seed=7)
    check("chat n=2: parses", isinstance(r, ChatCompletion))
    strict("chat n=2", [r])
    check("chat n=2: two choices", sorted(c.index for c in r.choices) == [0, 1], r.choices)
    total = 0
    for c in r.choices:
        content = c.logprobs.content
        total += len(content)
        check(f"chat n=2: choice {c.index} logprobs typed", len(content) > 0
              and all(isinstance(t, ChatCompletionTokenLogprob) for t in content), c)
        check(f"chat n=2: choice {c.index} logprobs sane", all(
            t.logprob <= 0 and len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
            and t.logprob <= t.top_logprobs[0].logprob + 1e-4 for t in content), content)
        check(f"chat n=2: choice {c.index} tokens spell the text",
              "".join(t.token for t in content) == c.message.content, (content, c.message.content))
    check("chat n=2: usage counts both choices", r.usage.completion_tokens == total, (r.usage, total))

    chunks = list(client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=8, n=2, logprobs=True, top_logprobs=2, stream=True))
    strict("chat n=2 stream", chunks)
    seen = {c.choices[0].index for c in chunks if c.choices}
    check("chat n=2 stream: both choices stream", seen == {0, 1}, seen)
    lps = [t for c in chunks for ch in c.choices if ch.logprobs and ch.logprobs.content for t in ch.logprobs.content]
    check("chat n=2 stream: logprobs typed", len(lps) > 0 and all(isinstance(t, ChatCompletionTokenLogprob)
                                                                   for t in lps), chunks)


def echo_logprobs():
    prompt = "The capital of France is"
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, echo=True, logprobs=2)
    check("completions echo: parses", isinstance(r, Completion))
    # Not `strict`: with `echo`, the first token has no log-probability (null, as OpenAI sends),
    # which the client's `Logprobs` type (lists of floats and dicts) does not allow for.
    c = r.choices[0]
    check("completions echo: text starts with the prompt", c.text.startswith(prompt), c.text)
    lp = c.logprobs
    n = len(lp.tokens)
    check("completions echo: logprobs lists agree", n == len(lp.token_logprobs) == len(lp.top_logprobs)
          == len(lp.text_offset), lp)
    check("completions echo: prompt and completion tokens", n == r.usage.prompt_tokens + r.usage.completion_tokens,
          (n, r.usage))
    check("completions echo: tokens spell the text", "".join(lp.tokens) == c.text, (lp.tokens, c.text))
    check("completions echo: first token has no logprob", lp.token_logprobs[0] is None, lp.token_logprobs)
    check("completions echo: other logprobs", all(x <= 0 for x in lp.token_logprobs[1:])
          and all(len(t) <= 2 for t in lp.top_logprobs if t is not None), lp)
    check("completions echo: offsets", lp.text_offset[0] == 0 and all(
        lp.text_offset[i + 1] == lp.text_offset[i] + len(lp.tokens[i]) for i in range(n - 1)), lp.text_offset)


def seed():
    def chat(s):
        r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=16, temperature=1, seed=s)
        return r.choices[0].message.content

    def complete(s):
        r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=16, temperature=1, seed=s)
        return r.choices[0].text

    a, b = chat(1234), chat(1234)
    check("chat seed: same seed, same text", a == b, (a, b))
    a, b = complete(99), complete(99)
    check("completions seed: same seed, same text", a == b, (a, b))
    others = {complete(s) for s in (1, 2, 3)}
    check("completions seed: other seeds sample", len(others | {a}) > 1, others)


for case in (include_usage, n_and_logprobs, echo_logprobs, seed):
    print(f"### {case.__name__}", flush=True)
    case()
done(f"(openai {openai.__version__})")
