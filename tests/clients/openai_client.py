"""Drives a running `glaze serve` with the official `openai` package (tests/it/serve.rs).

usage: openai_client.py BASE_URL IMAGE.png CLIP.wav
Prints one JSON line with what it saw; exits non-zero when the client and server disagree.
"""
import base64
import json
import sys

import openai

base_url, image_path, clip_path = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0)


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


model = client.models.list().data[0].id
parts = [
    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(image_path)}},
    {"type": "input_audio", "input_audio": {"data": b64(clip_path), "format": "wav"}},
    {"type": "text", "text": "What do the picture and the clip have in common?"},
]
messages = [{"role": "user", "content": parts}]
reply = client.chat.completions.create(model=model, messages=messages, max_tokens=8)
text = reply.choices[0].message.content
usage = reply.usage.model_dump()

stream = client.chat.completions.create(model=model, messages=messages, max_tokens=8, stream=True)
pieces, finish = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.choices and chunk.choices[0].finish_reason:
        finish = chunk.choices[0].finish_reason
streamed = "".join(pieces)

try:
    client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "@@", "format": "wav"}}]}],
    )
    error = None
except openai.BadRequestError as e:
    error = {"status": e.status_code, "param": e.body.get("param") if isinstance(e.body, dict) else None}

print(json.dumps({
    "openai": openai.__version__,
    "model": model,
    "text": text,
    "streamed": streamed,
    "finish": finish,
    "usage": usage,
    "error": error,
}))
if text != streamed:
    sys.exit("streamed text differs from the complete answer")
