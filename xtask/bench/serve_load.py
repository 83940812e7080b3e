"""The load of `cargo xtask bench serve`: concurrent streaming clients of an OpenAI-compatible
chat server. Prints one JSON line: aggregate completion tokens per second over the wall time
of the whole load, and the time to first token (p50, p95) over every request.

Standard library only, so the same interpreter drives Glaze and llama.cpp's server.
"""

import argparse
import base64
import http.client
import json
import statistics
import threading
import time

QUESTIONS = [
    "Explain how a bicycle works.",
    "Describe a walk through a forest in autumn.",
    "What should a beginner know about cooking rice?",
    "Tell me about the history of the printing press.",
    "Why is the sky blue?",
    "Give advice for a first job interview.",
    "Describe the life of a honey bee.",
    "How do trains stay on their tracks?",
]


def request(host, port, body):
    """One streamed request: (seconds to the first content, completion tokens, seconds)."""
    conn = http.client.HTTPConnection(host, port, timeout=900)
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first, pieces, usage = None, 0, None
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[len(b"data: "):]
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            usage = chunk["usage"].get("completion_tokens")
        choices = chunk.get("choices") or []
        if choices and (choices[0].get("delta") or {}).get("content"):
            pieces += 1
            if first is None:
                first = time.perf_counter() - start
    conn.close()
    # Both servers report usage in the last chunk; the pieces count stands in otherwise.
    return first, usage if usage is not None else pieces, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--requests", type=int, default=4, help="per client, one after another")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--system", default=None, help="file holding a system message")
    p.add_argument("--image", default=None, help="an image sent with every request")
    args = p.parse_args()
    system = open(args.system).read() if args.system else None
    image = None
    if args.image:
        mime = "image/jpeg" if args.image.lower().endswith((".jpg", ".jpeg")) else "image/png"
        data = base64.b64encode(open(args.image, "rb").read()).decode()
        image = f"data:{mime};base64,{data}"

    def body(i):
        question = QUESTIONS[i % len(QUESTIONS)]
        content = question
        if image:
            content = [{"type": "image_url", "image_url": {"url": image}},
                       {"type": "text", "text": question}]
        messages = [{"role": "user", "content": content}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        return {"messages": messages, "max_tokens": args.max_tokens, "temperature": 0,
                "stream": True, "stream_options": {"include_usage": True}}

    results, errors = [], []
    lock = threading.Lock()
    gate = threading.Barrier(args.clients)

    def client(c):
        gate.wait()
        for r in range(args.requests):
            try:
                out = request("127.0.0.1", args.port, body(c * args.requests + r))
                with lock:
                    results.append(out)
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ttft = sorted(r[0] for r in results if r[0] is not None)
    tokens = sum(r[1] for r in results)

    def quantile(q):
        return ttft[min(len(ttft) - 1, int(q * len(ttft)))] if ttft else None

    print(json.dumps({
        "clients": args.clients,
        "requests": len(results),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "tok_s": round(tokens / wall, 3) if wall > 0 else None,
        "ttft_p50_s": quantile(0.5),
        "ttft_p95_s": quantile(0.95),
        "ttft_mean_s": statistics.fmean(ttft) if ttft else None,
    }))


if __name__ == "__main__":
    main()
