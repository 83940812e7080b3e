"""Peer measurements for `cargo xtask bench`: llama.cpp (llama-cpp-python) and HF transformers
on the same GGUF, same prompt length, same thread count. Prints one JSON object per engine.

usage: peers.py MODEL.gguf PROMPT_TOKENS DECODE_TOKENS REPS THREADS [engines...]
"""
import json
import resource
import sys
import time


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def prompt_ids(tokenize, n):
    text = ("The history of the river valley begins with small farming villages, "
            "whose people traded grain, pottery and tools along the water. ")
    ids = []
    while len(ids) < n:
        ids.extend(tokenize(text))
    return ids[:n]


def bench_llama_cpp(model, n_prompt, n_decode, reps, threads):
    from llama_cpp import Llama
    llm = Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False, logits_all=False)
    ids = prompt_ids(lambda t: llm.tokenize(t.encode(), add_bos=False), n_prompt)
    best_prefill, best_decode = 0.0, 0.0
    for _ in range(reps):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        best_prefill = max(best_prefill, len(ids) / (t1 - t0))
        t0 = time.perf_counter()
        for _ in range(n_decode):
            tok = llm.sample(temp=0.0)
            llm.eval([tok])
        t1 = time.perf_counter()
        best_decode = max(best_decode, n_decode / (t1 - t0))
    import llama_cpp
    return {"engine": "llama.cpp", "version": llama_cpp.__version__, "prompt_tokens": len(ids),
            "decode_tokens": n_decode, "prefill_tok_s": best_prefill, "decode_tok_s": best_decode,
            "peak_rss_mb": peak_rss_mb()}


def bench_transformers(model, n_prompt, n_decode, reps, threads):
    import os
    import torch
    import transformers
    torch.set_num_threads(threads)
    d, f = os.path.split(model)
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
    lm = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    lm.eval()
    ids = prompt_ids(lambda t: tok.encode(t, add_special_tokens=False), n_prompt)
    x = torch.tensor([ids])
    best_prefill, best_decode = 0.0, 0.0
    with torch.no_grad():
        for _ in range(reps):
            t0 = time.perf_counter()
            lm(x, use_cache=True)
            prefill = time.perf_counter() - t0
            best_prefill = max(best_prefill, len(ids) / prefill)
            # Decode as users run it: `generate`, greedy, exactly n_decode new tokens; the
            # prefill time measured above is subtracted.
            t0 = time.perf_counter()
            lm.generate(x, max_new_tokens=n_decode, min_new_tokens=n_decode, do_sample=False)
            total = time.perf_counter() - t0
            best_decode = max(best_decode, (n_decode - 1) / max(total - prefill, 1e-9))
    return {"engine": "transformers", "version": transformers.__version__,
            "torch": torch.__version__, "prompt_tokens": len(ids), "decode_tokens": n_decode,
            "prefill_tok_s": best_prefill, "decode_tok_s": best_decode, "peak_rss_mb": peak_rss_mb()}


def main():
    model, n_prompt, n_decode, reps, threads = sys.argv[1], *map(int, sys.argv[2:6])
    engines = sys.argv[6:] or ["llama.cpp", "transformers"]
    for engine in engines:
        fn = {"llama.cpp": bench_llama_cpp, "transformers": bench_transformers}[engine]
        try:
            print(json.dumps(fn(model, n_prompt, n_decode, reps, threads)), flush=True)
        except ImportError as e:
            print(json.dumps({"engine": engine, "error": f"not installed: {e}"}), flush=True)


if __name__ == "__main__":
    main()
