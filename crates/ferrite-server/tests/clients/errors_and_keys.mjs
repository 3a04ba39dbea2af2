// Errors as the official `openai` npm package sees them, against a ferrite started with
// `--api-key` (FERRITE_API_KEY): the right key works, a wrong one throws AuthenticationError
// (401), a bad temperature BadRequestError (400) with ferrite's message, an unknown model
// NotFoundError (404), and embeddings and images asked of a chat model an OpenAI error. Prints
// `ok NAME` per check and `### done N checks`; any failure throws.

import { readFileSync } from "node:fs";
import OpenAI from "openai";

const baseURL = process.env.FERRITE_BASE_URL + "/v1/openai";
const client = new OpenAI({ apiKey: process.env.FERRITE_API_KEY, baseURL, maxRetries: 0 });
const wrong = new OpenAI({ apiKey: "not-the-key", baseURL, maxRetries: 0 });
const MODEL = "meta-llama/Meta-Llama-3-8B-Instruct";
const HELLO = [{ role: "user", content: "Hello" }];
let checks = 0;

function check(name, cond, detail) {
  if (!cond) throw new Error(`${name}: ${JSON.stringify(detail)}`);
  checks += 1;
  console.log(`ok ${name}`);
}

async function raises(name, kind, status, call, fields = {}) {
  try {
    await call();
  } catch (e) {
    check(`${name}: ${kind.name}`, e instanceof kind && e.constructor === kind, String(e));
    check(`${name}: status ${status}`, e.status === status, e.status);
    check(`${name}: error body`, typeof e.error?.message === "string" && e.error.message !== ""
      && "type" in e.error, e.error);
    for (const [k, v] of Object.entries(fields)) {
      const got = k === "message" ? e.error.message : e[k];
      check(`${name}: ${k}`, k === "message" ? got.includes(v) : got === v, [k, got, v]);
    }
    return;
  }
  throw new Error(`${name}: nothing thrown`);
}

console.log("### keys");
const models = [];
for await (const m of client.models.list()) models.push(m.id);
check("right key: models list", models.includes(MODEL), models);
const r = await client.chat.completions.create({ model: MODEL, messages: HELLO, max_tokens: 4 });
check("right key: chat", r.choices[0].message.content !== "", r);
const chat = (c, extra = {}) => () => c.chat.completions.create({ model: MODEL, messages: HELLO, ...extra });
await raises("wrong key", OpenAI.AuthenticationError, 401, chat(wrong, { max_tokens: 4 }), { code: "invalid_api_key" });
await raises("wrong key stream", OpenAI.AuthenticationError, 401, chat(wrong, { max_tokens: 4, stream: true }));

console.log("### errors");
await raises("bad temperature", OpenAI.BadRequestError, 400, chat(client, { temperature: 3 }),
  { param: "temperature", type: "invalid_request_error", message: "temperature must be between 0 and 2, got 3" });
await raises("bad temperature stream", OpenAI.BadRequestError, 400, chat(client, { temperature: 3, stream: true }),
  { param: "temperature" });
await raises("unknown model", OpenAI.NotFoundError, 404, chat(client, { model: "gpt-9" }),
  { code: "model_not_found", param: "model" });
await raises("unknown model completions", OpenAI.NotFoundError, 404,
  () => client.completions.create({ model: "gpt-9", prompt: "Hi" }), { code: "model_not_found" });

console.log("### not served yet");
// DeepInfra's embeddings example names a model this server does not deploy.
await raises("embeddings example", OpenAI.NotFoundError, 404, () => client.embeddings.create({
  model: "BAAI/bge-large-en-v1.5", input: "The quick brown fox jumped over the lazy dog", encoding_format: "float",
}));
await raises("embeddings", OpenAI.BadRequestError, 400, () => client.embeddings.create({ model: MODEL, input: "hi" }),
  { message: "does not support embeddings" });
// DeepInfra's images example names no model: ferrite takes its first image model, and this
// server has none.
await raises("images example", OpenAI.BadRequestError, 400, () => client.images.generate({
  prompt: "A photo of an astronaut riding a horse on Mars.", size: "1024x1024", n: 1,
}), { param: "model" });
// The test runs this script from the folder the package was installed into.
const { version } = JSON.parse(readFileSync(new URL("./node_modules/openai/package.json", import.meta.url)));
console.log(`### done ${checks} checks (openai ${version})`);
