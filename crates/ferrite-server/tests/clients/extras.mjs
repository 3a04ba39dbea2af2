// Beyond DeepInfra's examples, with the official `openai` npm package against ferrite: usage in a
// last chunk (`stream_options`), `n` with chat log-probabilities (streamed and not), completions
// with `echo` and `logprobs`, and `seed` reproducibility. Prints `ok NAME` per check and
// `### done N checks`; any failure throws (exit status 1).

import { readFileSync } from "node:fs";
import OpenAI from "openai";

const client = new OpenAI({
  apiKey: process.env.FERRITE_API_KEY || "none",
  baseURL: process.env.FERRITE_BASE_URL + "/v1/openai",
  maxRetries: 0,
});
const MODEL = "meta-llama/Meta-Llama-3-8B-Instruct";
const HELLO = [{ role: "user", content: "Hello" }];
let checks = 0;

function check(name, cond, detail) {
  if (!cond) throw new Error(`${name}: ${JSON.stringify(detail)}`);
  checks += 1;
  console.log(`ok ${name}`);
}

async function collect(stream) {
  const out = [];
  for await (const chunk of stream) out.push(chunk);
  return out;
}

async function includeUsage() {
  const chunks = await collect(await client.chat.completions.create({
    model: MODEL, messages: HELLO, max_tokens: 16, stream: true, stream_options: { include_usage: true },
  }));
  const last = chunks.at(-1);
  check("chat include_usage: chunk objects", chunks.every((c) => c.object === "chat.completion.chunk"), chunks);
  check("chat include_usage: last chunk has no choices", last.choices.length === 0, last);
  const u = last.usage;
  check("chat include_usage: last chunk has usage", u && u.prompt_tokens > 0 && u.completion_tokens > 0
    && u.total_tokens === u.prompt_tokens + u.completion_tokens, last);
  const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? "")).join("");
  check("chat include_usage: content streamed", text.trim() !== "", chunks);

  // Greedy: sampled at the default temperature 1, the model may end before 8 tokens.
  const done = await collect(await client.completions.create({
    model: MODEL, prompt: "The capital of France is", max_tokens: 8, stream: true, temperature: 0,
    stream_options: { include_usage: true },
  }));
  const end = done.at(-1);
  check("completions include_usage: last chunk",
    end.choices.length === 0 && end.usage && end.usage.completion_tokens === 8, end);
}

async function nAndLogprobs() {
  const r = await client.chat.completions.create({
    model: MODEL, messages: HELLO, max_tokens: 8, n: 2, logprobs: true, top_logprobs: 2, temperature: 1, seed: 7,
  });
  check("chat n=2: two choices", r.choices.map((c) => c.index).sort().join() === "0,1", r.choices);
  let total = 0;
  for (const c of r.choices) {
    const content = c.logprobs.content;
    total += content.length;
    check(`chat n=2: choice ${c.index} logprobs`, content.length > 0 && content.every((t) =>
      typeof t.token === "string" && t.logprob <= 0 && Array.isArray(t.bytes) && t.top_logprobs.length === 2
      && t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob), content);
    check(`chat n=2: choice ${c.index} tokens spell the text`,
      content.map((t) => t.token).join("") === c.message.content, [content, c.message.content]);
  }
  check("chat n=2: usage counts both choices", r.usage.completion_tokens === total, [r.usage, total]);

  const chunks = await collect(await client.chat.completions.create({
    model: MODEL, messages: HELLO, max_tokens: 8, n: 2, logprobs: true, top_logprobs: 2, stream: true,
  }));
  const seen = new Set(chunks.flatMap((c) => c.choices.map((ch) => ch.index)));
  check("chat n=2 stream: both choices stream", seen.size === 2 && seen.has(0) && seen.has(1), [...seen]);
  const lps = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.logprobs?.content ?? []));
  check("chat n=2 stream: logprobs", lps.length > 0 && lps.every((t) => t.logprob <= 0), chunks);
}

async function echoLogprobs() {
  const prompt = "The capital of France is";
  const r = await client.completions.create({ model: MODEL, prompt, max_tokens: 4, echo: true, logprobs: 2 });
  const c = r.choices[0];
  const lp = c.logprobs;
  const n = lp.tokens.length;
  check("completions echo: text starts with the prompt", c.text.startsWith(prompt), c.text);
  check("completions echo: logprobs lists agree", n === lp.token_logprobs.length && n === lp.top_logprobs.length
    && n === lp.text_offset.length, lp);
  check("completions echo: prompt and completion tokens",
    n === r.usage.prompt_tokens + r.usage.completion_tokens, [n, r.usage]);
  check("completions echo: tokens spell the text", lp.tokens.join("") === c.text, [lp.tokens, c.text]);
  check("completions echo: first token has no logprob", lp.token_logprobs[0] === null, lp.token_logprobs);
  check("completions echo: top logprobs", lp.top_logprobs.slice(1).every((t) => Object.keys(t).length <= 2), lp);
}

async function seed() {
  const chat = async (s) => (await client.chat.completions.create({
    model: MODEL, messages: HELLO, max_tokens: 16, temperature: 1, seed: s,
  })).choices[0].message.content;
  const complete = async (s) => (await client.completions.create({
    model: MODEL, prompt: "Once upon a time", max_tokens: 16, temperature: 1, seed: s,
  })).choices[0].text;
  const [a, b] = [await chat(1234), await chat(1234)];
  check("chat seed: same seed, same text", a === b, [a, b]);
  const [c, d] = [await complete(99), await complete(99)];
  check("completions seed: same seed, same text", c === d, [c, d]);
}

for (const [name, run] of [["include_usage", includeUsage], ["n_and_logprobs", nAndLogprobs],
  ["echo_logprobs", echoLogprobs], ["seed", seed]]) {
  console.log(`### ${name}`);
  await run();
}
// The test runs this script from the folder the package was installed into.
const { version } = JSON.parse(readFileSync(new URL("./node_modules/openai/package.json", import.meta.url)));
console.log(`### done ${checks} checks (openai ${version})`);
