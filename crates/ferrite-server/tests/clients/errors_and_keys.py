"""Errors as the official `openai` Python client sees them, against a ferrite started with
`--api-key` (FERRITE_API_KEY): the right key works, a wrong one raises AuthenticationError (401),
a bad temperature BadRequestError (400) with ferrite's message, an unknown model NotFoundError
(404), and embeddings and images asked of a chat model an OpenAI error. Prints `ok NAME` per check and
`### done N checks`; any failure raises.
"""

import os

import openai
from openai import OpenAI

from client_checks import check, done


BASE_URL = os.environ["FERRITE_BASE_URL"] + "/v1/openai"
KEY = os.environ["FERRITE_API_KEY"]
MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
HELLO = [{"role": "user", "content": "Hello"}]
client = OpenAI(api_key=KEY, base_url=BASE_URL, max_retries=0)


def raises(name, kind, status, call, **fields):
    """`call()` must raise `kind` with `status`, an OpenAI error body, and these body fields."""
    try:
        call()
    except openai.APIStatusError as e:
        check(f"{name}: {kind.__name__}", type(e) is kind, repr(e))
        check(f"{name}: status {status}", e.status_code == status, e.status_code)
        check(f"{name}: error body", isinstance(e.body, dict) and isinstance(e.body.get("message"), str)
              and e.body["message"] != "" and "type" in e.body, e.body)
        for k, v in fields.items():
            got = getattr(e, k) if k in ("code", "param", "type") else e.body.get(k)
            ok = v in got if k == "message" else got == v
            check(f"{name}: {k}", ok, (k, got, v))
        return e
    raise AssertionError(f"{name}: no error raised")


print("### keys", flush=True)
models = [m.id for m in client.models.list()]
check("right key: models list", MODEL in models, models)
r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4)
check("right key: chat", r.choices[0].message.content != "", r)
wrong = OpenAI(api_key="not-the-key", base_url=BASE_URL, max_retries=0)
raises("wrong key", openai.AuthenticationError, 401,
       lambda: wrong.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4), code="invalid_api_key")
raises("wrong key stream", openai.AuthenticationError, 401,
       lambda: wrong.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, stream=True))
raises("wrong key models", openai.AuthenticationError, 401, lambda: wrong.models.list())

print("### errors", flush=True)
raises("bad temperature", openai.BadRequestError, 400,
       lambda: client.chat.completions.create(model=MODEL, messages=HELLO, temperature=3),
       param="temperature", type="invalid_request_error", message="temperature must be between 0 and 2, got 3")
raises("bad temperature stream", openai.BadRequestError, 400,
       lambda: client.chat.completions.create(model=MODEL, messages=HELLO, temperature=3, stream=True),
       param="temperature")
raises("bad temperature completions", openai.BadRequestError, 400,
       lambda: client.completions.create(model=MODEL, prompt="Hi", temperature=-1), param="temperature")
raises("unknown model", openai.NotFoundError, 404,
       lambda: client.chat.completions.create(model="gpt-9", messages=HELLO), code="model_not_found", param="model")
raises("unknown model completions", openai.NotFoundError, 404,
       lambda: client.completions.create(model="gpt-9", prompt="Hi"), code="model_not_found")
raises("unknown model retrieve", openai.NotFoundError, 404, lambda: client.models.retrieve("gpt-9"))

print("### not served yet", flush=True)
# DeepInfra's embeddings example names a model this server does not deploy.
raises("embeddings example", openai.NotFoundError, 404, lambda: client.embeddings.create(
    model="BAAI/bge-large-en-v1.5", input="The food was delicious and the waiter...", encoding_format="float"))
raises("embeddings", openai.BadRequestError, 400,
       lambda: client.embeddings.create(model=MODEL, input="hi"), message="does not support embeddings")
# DeepInfra's images example names no model: ferrite takes its first image model, and this
# server has none.
raises("images example", openai.BadRequestError, 400, lambda: client.images.generate(
    prompt="A photo of an astronaut riding a horse on Mars.", size="1024x1024", quality="standard", n=1),
    param="model")
raises("images", openai.BadRequestError, 400, lambda: client.images.generate(
    model=MODEL, prompt="A photo of an astronaut riding a horse on Mars.", size="1024x1024", n=1),
    message="does not generate images")
done(f"(openai {openai.__version__})")
