"""DeepInfra's embeddings example with the official `openai` Python client against ferrite
serving all-MiniLM-L6-v2 under the example's model name (only base_url and the key changed),
then both encodings: `float`, and `base64` (the client's default, which it decodes itself).
Prints `ok NAME` per check and `### done N checks` at the end; any failure raises.
"""

import math
import os

from openai import OpenAI

from client_checks import check, done


openai = OpenAI(
    api_key=os.environ.get("FERRITE_API_KEY", "none"),
    base_url=os.environ["FERRITE_BASE_URL"] + "/v1/openai",
    max_retries=0,
)


# DeepInfra's example, as written (a one-element tuple, because of its trailing comma).
input = "The food was delicious and the waiter...",  # or an array ["hello", "world"]

embeddings = openai.embeddings.create(
  model="BAAI/bge-large-en-v1.5",
  input=input,
  encoding_format="float"
)

if isinstance(input, str):
    print(embeddings.data[0].embedding)
else:
    for i in range(len(input)):
        print(embeddings.data[i].embedding)

print(embeddings.usage.prompt_tokens)
check("example", len(embeddings.data) == 1 and len(embeddings.data[0].embedding) == 384)
check("example usage", embeddings.usage.prompt_tokens > 5, embeddings.usage)

texts = ["A man is eating food.", "hello", "world"]
as_float = openai.embeddings.create(model="BAAI/bge-large-en-v1.5", input=texts, encoding_format="float")
as_b64 = openai.embeddings.create(model="BAAI/bge-large-en-v1.5", input=texts)  # base64 on the wire
check("three vectors", [d.index for d in as_float.data] == [0, 1, 2])
for f, b in zip(as_float.data, as_b64.data):
    # base64 carries the f32 bits; JSON floats print each f32 in its shortest decimal form, which
    # Python reads back as a nearby float64.
    diff = max(abs(x - y) for x, y in zip(f.embedding, b.embedding))
    check(f"base64 equals float {f.index}", len(f.embedding) == len(b.embedding) and diff < 1e-7, diff)
    norm = math.sqrt(sum(x * x for x in f.embedding))
    check(f"unit length {f.index}", abs(norm - 1) < 1e-5, norm)
want = [0.03324, 0.00441, -0.00628, 0.04838, -0.1387]
got = as_float.data[0].embedding[:5]
check("known vector", all(abs(a - b) < 1e-4 for a, b in zip(got, want)), got)
short = openai.embeddings.create(model="BAAI/bge-large-en-v1.5", input="hello", dimensions=64)
v = short.data[0].embedding
check("dimensions", len(v) == 64 and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5)
done()
