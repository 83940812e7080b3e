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


def bench_llama_cpp_batched(model, n_prompt, n_decode, reps, threads, n_seq=8):
    """`n_seq` sequences decoded together through llama.cpp's own batch API (one
    `llama_decode` per step with one token of every sequence, unified KV cache), the setup of
    its parallel-sequence serving; greedy argmax on the returned logits."""
    import llama_cpp as lc
    import numpy as np
    lc.llama_backend_init()
    mparams = lc.llama_model_default_params()
    mdl = lc.llama_model_load_from_file(model.encode(), mparams)
    cparams = lc.llama_context_default_params()
    cparams.n_ctx = n_seq * (n_prompt + n_decode + 16)
    cparams.n_batch = n_seq * n_prompt
    cparams.n_ubatch = 512
    cparams.n_seq_max = n_seq
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    cparams.kv_unified = True
    ctx = lc.llama_init_from_model(mdl, cparams)
    vocab = lc.llama_model_get_vocab(mdl)
    n_vocab = lc.llama_vocab_n_tokens(vocab)

    def tokenize(text):
        buf = (lc.llama_token * 4096)()
        n = lc.llama_tokenize(vocab, text.encode(), len(text.encode()), buf, 4096, False, False)
        return list(buf[:n])

    ids = prompt_ids(tokenize, n_prompt + n_seq)
    rows = [ids[r:r + n_prompt] for r in range(n_seq)]
    batch = lc.llama_batch_init(n_seq * n_prompt, 0, n_seq)

    def fill(entries):
        batch.n_tokens = len(entries)
        for i, (tok, pos, seq, want) in enumerate(entries):
            batch.token[i] = tok
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = want

    def argmax(i):
        p = lc.llama_get_logits_ith(ctx, i)
        return int(np.ctypeslib.as_array(p, shape=(n_vocab,)).argmax())

    best_prefill, best_decode = 0.0, 0.0
    for _ in range(reps):
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        fill([(t, p, s, p == n_prompt - 1) for s, row in enumerate(rows)
              for p, t in enumerate(row)])
        t0 = time.perf_counter()
        assert lc.llama_decode(ctx, batch) == 0
        t1 = time.perf_counter()
        best_prefill = max(best_prefill, n_seq * n_prompt / (t1 - t0))
        nxt = [argmax(s * n_prompt + n_prompt - 1) for s in range(n_seq)]
        t0 = time.perf_counter()
        for step in range(n_decode - 1):
            fill([(nxt[s], n_prompt + step, s, True) for s in range(n_seq)])
            assert lc.llama_decode(ctx, batch) == 0
            nxt = [argmax(s) for s in range(n_seq)]
        t1 = time.perf_counter()
        best_decode = max(best_decode, n_seq * (n_decode - 1) / (t1 - t0))
    lc.llama_batch_free(batch)
    return {"engine": "llama.cpp", "mode": f"{n_seq} sequences at once",
            "version": lc.__version__, "batch": n_seq, "prompt_tokens": n_prompt,
            "decode_tokens": n_decode, "prefill_tok_s": best_prefill,
            "decode_tok_s": best_decode, "peak_rss_mb": peak_rss_mb()}


def device_name(torch, device):
    """The card's name on CUDA, else the device string."""
    return torch.cuda.get_device_name() if device.startswith("cuda") else device


def bench_transformers(model, n_prompt, n_decode, reps, threads):
    import os
    import torch
    import transformers
    torch.set_num_threads(threads)
    # GLAZE_BENCH_DEVICE=cuda for the GPU section (xtask/bench/gpu.sh); the CPU otherwise.
    device = os.environ.get("GLAZE_BENCH_DEVICE", "cpu")
    d, f = os.path.split(model)
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
    lm = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    lm.to(device).eval()
    ids = prompt_ids(lambda t: tok.encode(t, add_special_tokens=False), n_prompt)
    x = torch.tensor([ids], device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best_prefill, best_decode = 0.0, 0.0
    with torch.no_grad():
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            lm(x, use_cache=True)
            sync()
            prefill = time.perf_counter() - t0
            best_prefill = max(best_prefill, len(ids) / prefill)
            # Decode as users run it: `generate`, greedy, exactly n_decode new tokens; the
            # prefill time measured above is subtracted.
            t0 = time.perf_counter()
            lm.generate(x, max_new_tokens=n_decode, min_new_tokens=n_decode, do_sample=False)
            sync()
            total = time.perf_counter() - t0
            best_decode = max(best_decode, (n_decode - 1) / max(total - prefill, 1e-9))
    return {"engine": "transformers", "version": transformers.__version__,
            "torch": torch.__version__, "device": device_name(torch, device), "prompt_tokens": len(ids), "decode_tokens": n_decode,
            "prefill_tok_s": best_prefill, "decode_tok_s": best_decode, "peak_rss_mb": peak_rss_mb()}


def main():
    model, n_prompt, n_decode, reps, threads = sys.argv[1], *map(int, sys.argv[2:6])
    engines = sys.argv[6:] or ["llama.cpp", "transformers"]
    for engine in engines:
        fn = {"llama.cpp": bench_llama_cpp, "transformers": bench_transformers,
              "llama.cpp-batched": bench_llama_cpp_batched}[engine]
        try:
            print(json.dumps(fn(model, n_prompt, n_decode, reps, threads)), flush=True)
        except ImportError as e:
            print(json.dumps({"engine": engine, "error": f"not installed: {e}"}), flush=True)


if __name__ == "__main__":
    main()
