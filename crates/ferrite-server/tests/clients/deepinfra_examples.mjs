// DeepInfra's OpenAI-API examples for Node.js (chat, multi-turn chat with a system message,
// completions; each streamed and not), run against ferrite with the official `openai` package.
//
// The code in each function is DeepInfra's, verbatim but for these changes:
// - `stream` is the function's argument, so that both branches run (the completions example's
//   undeclared `stream = true` would also throw in an ES module, which is strict);
// - `max_tokens: MAX_TOKENS` keeps the suite fast (unbounded, SmolLM2 sampled at temperature 1
//   can ramble on for thousands of tokens);
// - `baseURL` and `apiKey` point at the ferrite server under test (FERRITE_BASE_URL, FERRITE_API_KEY);
// - the completions prompt is ChatML, with `stop: ["<|im_end|>"]`: ferrite serves SmolLM2 under the
//   name meta-llama/Meta-Llama-3-8B-Instruct, and SmolLM2 does not know Llama 3's format;
// - each `main()` is awaited, so that runs do not interleave.
// Each run is headed by a line `### NAME stream=BOOL`; the Rust test checks what each printed.

import OpenAI from "openai";

const BASE_URL = process.env.FERRITE_BASE_URL + "/v1/openai";
const API_KEY = process.env.FERRITE_API_KEY || "none";
const MAX_TOKENS = 32;

async function chat(stream) {
  const openai = new OpenAI({
    apiKey: API_KEY,
    baseURL: BASE_URL,
  });

  async function main() {
    const completion = await openai.chat.completions.create({
      messages: [{ role: "user", content: "Hello" }],
      model: "meta-llama/Meta-Llama-3-8B-Instruct",
      stream: stream,
      max_tokens: MAX_TOKENS,
    });

    if (stream) {
      for await (const chunk of completion) {
        if (chunk.choices[0].finish_reason) {
          console.log(chunk.choices[0].finish_reason,
                      chunk.usage.prompt_tokens,
                      chunk.usage.completion_tokens);
        } else {
          console.log(chunk.choices[0].delta.content);
        }
      }
    } else {
      console.log(completion.choices[0].message.content);
      console.log(completion.usage.prompt_tokens, completion.usage.completion_tokens);
    }
  }

  await main();
}

async function conversation(stream) {
  const openai = new OpenAI({
    baseURL: BASE_URL,
    apiKey: API_KEY,
  });

  async function main() {
    const completion = await openai.chat.completions.create({
      messages: [
        {role: "system", content: "Respond like a michelin starred chef."},
        {role: "user", content: "Can you name at least two different techniques to cook lamb?"},
        {role: "assistant", content: "Bonjour! Let me tell you, my friend, cooking lamb is an art form, and I'm more than happy to share with you not two, but three of my favorite techniques to coax out the rich, unctuous flavors and tender textures of this majestic protein. First, we have the classic \"Sous Vide\" method. Next, we have the ancient art of \"Sous le Sable\". And finally, we have the more modern technique of \"Hot Smoking.\""},
        {role: "user", "content": "Tell me more about the second method."}
      ],
      model: "meta-llama/Meta-Llama-3-8B-Instruct",
      stream: stream,
      max_tokens: MAX_TOKENS,
    });

    if (stream) {
      for await (const chunk of completion) {
        if (chunk.choices[0].finish_reason) {
          console.log(chunk.choices[0].finish_reason,
                      chunk.usage.prompt_tokens,
                      chunk.usage.completion_tokens);
        } else {
          console.log(chunk.choices[0].delta.content);
        }
      }
    } else {
      console.log(completion.choices[0].message.content);
      console.log(completion.usage.prompt_tokens, completion.usage.completion_tokens);
    }
  }

  await main();
}

async function completions(stream) {
  const openai = new OpenAI({
    baseURL: BASE_URL,
    apiKey: API_KEY,
  });

  async function main() {
    // DeepInfra's prompt is Llama 3's format; the model behind the name here is SmolLM2, whose
    // format is ChatML, so the prompt and stop string are ChatML's (the code is unchanged).
    const completion = await openai.completions.create({
      "model": "meta-llama/Meta-Llama-3-8B-Instruct",
      "prompt": "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
      "stream": stream,
      "stop": [
        "<|im_end|>"
      ],
      "max_tokens": MAX_TOKENS,
    });

    if (stream) {
      for await (const chunk of completion) {
        if (chunk.choices[0].finish_reason) {
            console.log(chunk.choices[0].finish_reason,
                        chunk.usage.prompt_tokens,
                        chunk.usage.completion_tokens);
        } else {
            console.log(chunk.choices[0].text);
        }
      }
    } else {
      console.log(completion.choices[0].text);
      console.log(completion.usage.prompt_tokens, completion.usage.completion_tokens);
    }
  }

  await main();
}

for (const example of [chat, conversation, completions]) {
  for (const stream of [true, false]) {
    console.log(`### ${example.name} stream=${stream ? "True" : "False"}`);
    await example(stream);
  }
}
console.log("### end");
