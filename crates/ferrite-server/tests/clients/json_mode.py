"""Guaranteed JSON through the official `openai` Python client against ferrite serving
Qwen2.5-Coder: `response_format` json_schema (a hand-written schema, and a pydantic model via
`chat.completions.parse`), json_object streamed and not, and an invalid schema answered with a
400 naming `response_format`. Prints `ok NAME` per check and `### done N checks` at the end; any
failure raises (exit status 1).
"""

import json
import os
from typing import Literal

import openai
from openai import OpenAI

from pydantic import BaseModel

from client_checks import check, done

client = OpenAI(
    api_key=os.environ.get("FERRITE_API_KEY", "none"),
    base_url=os.environ["FERRITE_BASE_URL"] + "/v1/openai",
    max_retries=0,
)
MODEL = "qwen2.5-coder"


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "role": {"type": "string", "enum": ["admin", "editor", "viewer"]},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city", "country"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "role", "address"],
    "additionalProperties": False,
}

r = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Invent a person who edits a newspaper in Rome."}],
    response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
    temperature=0,
    max_tokens=200,
)
text = r.choices[0].message.content
check("json_schema finishes", r.choices[0].finish_reason == "stop", r)
person = json.loads(text)
check("json_schema keys", sorted(person) == ["address", "age", "name", "role"], text)
check("json_schema integer", type(person["age"]) is int, text)
check("json_schema enum", person["role"] in ("admin", "editor", "viewer"), text)
check("json_schema nested", sorted(person["address"]) == ["city", "country"], text)


class Step(BaseModel):
    explanation: str
    output: str


class MathReasoning(BaseModel):
    steps: list[Step]
    final_answer: int
    confidence: Literal["low", "medium", "high"]


parsed = client.chat.completions.parse(
    model=MODEL,
    messages=[
        {"role": "system", "content": "You are a helpful math tutor. Guide the user through the solution step by step."},
        {"role": "user", "content": "how can I solve 8x + 7 = -23"},
    ],
    response_format=MathReasoning,
    temperature=0,
    max_tokens=400,
)
msg = parsed.choices[0].message
check("parse finishes", parsed.choices[0].finish_reason == "stop", parsed)
check("parse gives the pydantic model", isinstance(msg.parsed, MathReasoning), msg)
check("parse integer answer", isinstance(msg.parsed.final_answer, int), msg.parsed)

for seed in (1, 2):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe your favourite city in JSON."}],
        response_format={"type": "json_object"},
        temperature=0.8,
        seed=seed,
        max_tokens=300,
    )
    obj = json.loads(r.choices[0].message.content)
    check(f"json_object seed={seed}", isinstance(obj, dict) and r.choices[0].finish_reason == "stop", r)

stream = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "List three fruits and their colours as JSON."}],
    response_format={"type": "json_object"},
    temperature=0,
    max_tokens=300,
    stream=True,
)
parts, finish = [], None
for chunk in stream:
    if chunk.choices:
        parts.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
check("json_object streamed", finish == "stop" and isinstance(json.loads("".join(parts)), dict), parts)

try:
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "no-such-type"}}},
        max_tokens=8,
    )
    raise AssertionError("an invalid schema was accepted")
except openai.BadRequestError as e:
    check("invalid schema is a 400", e.status_code == 400 and e.body.get("param") == "response_format", e.body)

done()
