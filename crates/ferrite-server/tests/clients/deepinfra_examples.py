"""DeepInfra's OpenAI-API examples (chat, multi-turn chat with a system message, completions;
each streamed and not), run against ferrite with the official `openai` client.

The code under each function is DeepInfra's, verbatim but for five changes:
- `stream` is the function's argument, so that both branches run;
- `max_tokens=MAX_TOKENS` keeps the suite fast (unbounded, SmolLM2 sampled at temperature 1 can
  ramble on for thousands of tokens);
- `base_url` and `api_key` point at the ferrite server under test (FERRITE_BASE_URL, FERRITE_API_KEY);
- the streaming branches read `event.usage.prompt_tokens` instead of `event.usage['prompt_tokens']`
  (usage is a pydantic object: the client itself rejects subscripting it);
- the completions prompt is ChatML, with `stop=['<|im_end|>']`: ferrite serves SmolLM2 under the
  name meta-llama/Meta-Llama-3-8B-Instruct, and SmolLM2 does not know Llama 3's format.
Each run is headed by a line `### NAME stream=BOOL`; the Rust test checks what each printed.
"""

import os

BASE_URL = os.environ["FERRITE_BASE_URL"] + "/v1/openai"
API_KEY = os.environ.get("FERRITE_API_KEY", "none")
MAX_TOKENS = 32


def chat(stream):
    from openai import OpenAI

    openai = OpenAI(
        api_key=API_KEY,
        base_url=BASE_URL,
    )

    chat_completion = openai.chat.completions.create(
        model="meta-llama/Meta-Llama-3-8B-Instruct",
        messages=[{"role": "user", "content": "Hello"}],
        stream=stream,
        max_tokens=MAX_TOKENS,
    )

    if stream:
        for event in chat_completion:
            if event.choices[0].finish_reason:
                print(event.choices[0].finish_reason,
                      event.usage.prompt_tokens,
                      event.usage.completion_tokens)
            else:
                print(event.choices[0].delta.content)
    else:
        print(chat_completion.choices[0].message.content)
        print(chat_completion.usage.prompt_tokens, chat_completion.usage.completion_tokens)


def conversation(stream):
    from openai import OpenAI

    openai = OpenAI(
        api_key=API_KEY,
        base_url=BASE_URL,
    )

    chat_completion = openai.chat.completions.create(
        model="meta-llama/Meta-Llama-3-8B-Instruct",
        messages=[
            {"role": "system", "content": "Respond like a michelin starred chef."},
            {"role": "user", "content": "Can you name at least two different techniques to cook lamb?"},
            {"role": "assistant", "content": "Bonjour! Let me tell you, my friend, cooking lamb is an art form, and I'm more than happy to share with you not two, but three of my favorite techniques to coax out the rich, unctuous flavors and tender textures of this majestic protein. First, we have the classic \"Sous Vide\" method. Next, we have the ancient art of \"Sous le Sable\". And finally, we have the more modern technique of \"Hot Smoking.\""},
            {"role": "user", "content": "Tell me more about the second method."},
        ],
        stream=stream,
        max_tokens=MAX_TOKENS,
    )

    if stream:
        for event in chat_completion:
            if event.choices[0].finish_reason:
                print(event.choices[0].finish_reason,
                      event.usage.prompt_tokens,
                      event.usage.completion_tokens)
            else:
                print(event.choices[0].delta.content)
    else:
        print(chat_completion.choices[0].message.content)
        print(chat_completion.usage.prompt_tokens, chat_completion.usage.completion_tokens)


def completions(stream):
    from openai import OpenAI

    openai = OpenAI(
        api_key=API_KEY,
        base_url=BASE_URL,
    )

    # DeepInfra's prompt is Llama 3's format; the model behind the name here is SmolLM2, whose
    # format is ChatML, so the prompt and stop string are ChatML's (the code is unchanged).
    completion = openai.completions.create(
        model='meta-llama/Meta-Llama-3-8B-Instruct',
        prompt='<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n',
        stop=['<|im_end|>'],
        stream=stream,
        max_tokens=MAX_TOKENS,
    )

    if stream:
        for event in completion:
            if event.choices[0].finish_reason:
                print(event.choices[0].finish_reason,
                      event.usage.prompt_tokens,
                      event.usage.completion_tokens)
            else:
                print(event.choices[0].text)
    else:
        print(completion.choices[0].text)
        print(completion.usage.prompt_tokens, completion.usage.completion_tokens)


for example in (chat, conversation, completions):
    for stream in (True, False):
        print(f"### {example.__name__} stream={stream}", flush=True)
        example(stream)
print("### end", flush=True)
