"""One Time-LLM training step in PyTorch, for `cargo xtask bench`.

The frozen backbone is HF transformers' Llama loaded from the same GGUF as Glaze, cut to its
first K blocks, every weight `requires_grad_(False)`; the adapter (patch embedding,
reprogramming with a `Linear(vocab, P)` map of the word embeddings, flatten head) is written
here in PyTorch with the shapes of glaze-timeseries' CPU configuration; AdamW updates only
the adapter after clipping the gradients' global norm to 1 (Glaze's default). Inputs go
through the `inputs_embeds` path.

usage: timellm_step.py MODEL.gguf BATCH LAYERS PROTOTYPES PROMPT_TOKENS STEPS THREADS MODE
MODE: full          prompt + patches through the blocks with autograd (Time-LLM's code)
      prefix        prompt through the blocks under no_grad each step, then the patches
                    attend to its keys/values (what Glaze does without its disk cache)
      prefix-cached prompt keys/values computed once and reused (Glaze with the cache)
GLAZE_BENCH_DEVICE=cuda runs it on the GPU (xtask/bench/gpu.sh); the CPU otherwise.
Prints one JSON line.
"""
import copy
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM

L, H, PATCH, STRIDE, D_PATCH, D_FF, HEADS, D_KEYS = 96, 96, 16, 8, 32, 128, 8, 32
N = (L + STRIDE - PATCH) // STRIDE + 1


class Reprogramming(nn.Module):
    def __init__(self, d_llm, vocab, protos):
        super().__init__()
        self.mapping = nn.Linear(vocab, protos)
        self.q = nn.Linear(D_PATCH, HEADS * D_KEYS)
        self.k = nn.Linear(d_llm, HEADS * D_KEYS)
        self.v = nn.Linear(d_llm, HEADS * D_KEYS)
        self.out = nn.Linear(HEADS * D_KEYS, d_llm)

    def forward(self, x, embed):
        b, n, _ = x.shape
        protos = self.mapping(embed.t()).t()  # [P, D]
        p = protos.shape[0]
        q = self.q(x).view(b, n, HEADS, D_KEYS).transpose(1, 2)
        k = self.k(protos).view(p, HEADS, D_KEYS).transpose(0, 1)
        v = self.v(protos).view(p, HEADS, D_KEYS).transpose(0, 1)
        att = torch.softmax(q @ k.transpose(-1, -2) / D_KEYS**0.5, dim=-1) @ v
        return self.out(att.transpose(1, 2).reshape(b, n, HEADS * D_KEYS))


class Adapter(nn.Module):
    def __init__(self, d_llm, vocab, protos):
        super().__init__()
        self.patch = nn.Linear(PATCH, D_PATCH)
        self.reprogram = Reprogramming(d_llm, vocab, protos)
        self.head = nn.Linear(N * D_FF, H)


def main():
    path, batch, layers, protos, prompt, steps, threads, mode = sys.argv[1:9]
    batch, layers, protos, prompt, steps, threads = map(
        int, (batch, layers, protos, prompt, steps, threads)
    )
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = os.environ.get("GLAZE_BENCH_DEVICE", "cpu")
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).to(device)
    llm = model.model
    llm.layers = llm.layers[:layers]
    llm.config.num_hidden_layers = layers
    model.requires_grad_(False)
    embed = llm.embed_tokens.weight
    vocab, d = embed.shape
    adapter = Adapter(d, vocab, protos).to(device)
    opt = torch.optim.AdamW(adapter.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.randn(batch, L, device=device)
    y = torch.randn(batch, H, device=device)
    ids = torch.randint(0, vocab, (batch, prompt), device=device)

    def prefix_cache():
        with torch.no_grad():
            return llm(inputs_embeds=llm.embed_tokens(ids), use_cache=True).past_key_values

    cached = prefix_cache() if mode == "prefix-cached" else None

    def step():
        sync()
        t0 = time.perf_counter()
        mean = x.mean(1, keepdim=True)
        std = (x.var(1, keepdim=True, unbiased=False) + 1e-5).sqrt()
        xn = (x - mean) / std
        xp = F.pad(xn.unsqueeze(1), (0, STRIDE), mode="replicate").squeeze(1)
        patches = xp.unfold(-1, PATCH, STRIDE)  # [B, N, PATCH]
        tokens = adapter.reprogram(adapter.patch(patches), embed)
        if mode == "full":
            seq = torch.cat([llm.embed_tokens(ids), tokens], 1)
            hidden = llm(inputs_embeds=seq).last_hidden_state[:, -N:]
        else:
            pkv = copy.deepcopy(cached) if cached is not None else prefix_cache()
            hidden = llm(inputs_embeds=tokens, past_key_values=pkv, use_cache=True).last_hidden_state
        out = adapter.head(hidden[..., :D_FF].reshape(batch, -1)) * std + mean
        loss = F.mse_loss(out, y)
        sync()
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        # Global-norm clipping at 1.0, as Glaze's trainer does by default (and HF Trainer's
        # max_grad_norm): the same update on both sides.
        torch.nn.utils.clip_grad_norm_(adapter.parameters(), 1.0)
        opt.step()
        sync()
        t3 = time.perf_counter()
        return (t1 - t0, t2 - t1, t3 - t2)

    step()
    times = []
    phases = []
    for _ in range(steps):
        t = time.perf_counter()
        phases.append(step())
        times.append(time.perf_counter() - t)
    times.sort()
    med = [sorted(p[i] for p in phases)[len(phases) // 2] for i in range(3)]
    frozen_grads = sum(p.grad is not None for p in model.parameters())
    print(json.dumps({
        "engine": "pytorch",
        "mode": mode,
        "device": torch.cuda.get_device_name() if cuda else device,
        "version": torch.__version__,
        "transformers": transformers.__version__,
        "batch": batch,
        "layers": layers,
        "prototypes": protos,
        "patches": N,
        "mean_prompt_tokens": prompt,
        "step_s": times[len(times) // 2],
        "forward_s": med[0],
        "backward_s": med[1],
        "update_s": med[2],
        "steps": steps,
        "trainable_params": sum(p.numel() for p in adapter.parameters()),
        "frozen_params_with_grad": frozen_grads,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }))


if __name__ == "__main__":
    main()
