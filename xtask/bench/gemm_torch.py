"""The products of `crates/glaze-llm/examples/gemm_profile.rs` in PyTorch (fp32, MKL/oneDNN),
for `cargo xtask bench`. usage: gemm_torch.py THREADS"""
import sys
import time

import torch

SHAPES = [
    ("prototypes  Wᵀ·E  100×49152 · 49152×576", (100, 49152), (49152, 576), False),
    ("its weight gradient  dP·Eᵀ  100×576 · 576×49152", (100, 576), (576, 49152), True),
    ("gate/up  384×576 · 576×3072", (384, 576), (576, 3072), False),
    ("its input gradient  dY·Wᵀ  384×3072 · 3072×576", (384, 3072), (3072, 576), True),
    ("down  384×1536 · 1536×576", (384, 1536), (1536, 576), False),
    ("square  1024×1024 · 1024×1024", (1024, 1024), (1024, 1024), False),
]


def main():
    torch.set_num_threads(int(sys.argv[1]))
    print(f"{'product':<52} {'torch ms':>12} {'GFLOP/s':>8}")
    for label, a, b, transposed in SHAPES:
        x = torch.rand(*a)
        y = torch.rand(b[1], b[0]).t() if transposed else torch.rand(*b)
        flops = 2.0 * a[0] * a[1] * b[1]
        reps = int(min(max(2e10 / flops, 3), 50))
        x @ y
        t = time.perf_counter()
        for _ in range(reps):
            x @ y
        s = (time.perf_counter() - t) / reps
        print(f"{label:<52} {s * 1e3:>12.2f} {flops / s / 1e9:>8.0f}")


if __name__ == "__main__":
    main()
