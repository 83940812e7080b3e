"""The soak of `cargo xtask bench soak`: mixed requests from concurrent clients against
`glaze serve` — good ones (plain and streamed), bad ones (broken JSON, broken base64, an
unknown part type, a body over the limit, an unknown model) and streams the client abandons
after the first chunk. Every answer's shape is checked: good requests must get a complete
chat completion, bad ones an OpenAI-shaped error with a 4xx status. Prints one JSON line.

Standard library only.
"""

import argparse
import http.client
import json
import threading
import time

TEXT = {"messages": [{"role": "user", "content": "Say something about bread."}], "max_tokens": 16}


def kinds(i):
    """The request kind of the i-th request: a fixed interleaving of good, bad and abandoned."""
    return ["good", "bad_json", "good_stream", "bad_base64", "good", "unknown_part",
            "abandon", "good_stream", "too_big", "unknown_model"][i % 10]


def body_of(kind):
    if kind == "bad_json":
        return b'{"messages": [', None
    if kind == "bad_base64":
        part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not base64@@"}}
        return json.dumps({"messages": [{"role": "user", "content": [part]}]}).encode(), None
    if kind == "unknown_part":
        part = {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}
        return json.dumps({"messages": [{"role": "user", "content": [part]}]}).encode(), None
    if kind == "too_big":
        return b'{"pad": "' + b"x" * (40 << 20) + b'"}', None
    if kind == "unknown_model":
        return json.dumps(dict(TEXT, model="no-such-model")).encode(), None
    stream = kind in ("good_stream", "abandon")
    return json.dumps(dict(TEXT, stream=stream)).encode(), stream


def one(port, kind):
    """Sends one request; returns None when its answer has the right shape, else a problem."""
    body, stream = body_of(kind)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if stream is None:
            data = json.loads(resp.read() or b"{}")
            err = data.get("error") or {}
            if 400 <= resp.status < 500 and isinstance(err.get("message"), str):
                return None
            return f"{kind}: status {resp.status}, body {str(data)[:200]}"
        if resp.status != 200:
            return f"{kind}: status {resp.status}"
        if not stream:
            data = json.loads(resp.read())
            content = data["choices"][0]["message"]["content"]
            ok = isinstance(content, str) and data["choices"][0]["finish_reason"] in ("stop", "length")
            return None if ok else f"{kind}: {str(data)[:200]}"
        if kind == "abandon":
            resp.readline()
            return None  # the connection closes below, mid-stream
        lines = [l.strip() for l in resp.read().split(b"\n") if l.startswith(b"data: ")]
        if lines[-1] != b"data: [DONE]":
            return f"{kind}: the stream did not end with [DONE]"
        last = json.loads(lines[-2][len(b"data: "):])
        if last["choices"][0]["finish_reason"] not in ("stop", "length"):
            return f"{kind}: last chunk {last}"
        return None
    except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException) as e:
        # A body over the limit may be refused before it is all sent.
        if kind == "too_big" and isinstance(e, (ConnectionError, http.client.HTTPException)):
            return None
        return f"{kind}: {type(e).__name__}: {e}"
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=1000, help="in all")
    args = p.parse_args()
    counter = iter(range(args.requests))
    lock = threading.Lock()
    problems, counts = [], {}

    def client():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            kind = kinds(i)
            problem = one(args.port, kind)
            with lock:
                counts[kind] = counts.get(kind, 0) + 1
                if problem:
                    problems.append(problem)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"requests": sum(counts.values()), "by_kind": counts,
                      "problems": len(problems), "first_problems": problems[:5],
                      "wall_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
