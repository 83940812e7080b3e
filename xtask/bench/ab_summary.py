"""Medians and ranges of an `ab.sh` run: decode and prefill tokens/s, training step seconds."""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
metrics = [("decode_tok_s", "decode tok/s"), ("prefill_tok_s", "prefill tok/s"),
           ("step_s", "Time-LLM step s"), ("peak_rss_mb", "peak RSS MiB")]
for binary in ("old", "new"):
    for key, name in metrics:
        for kind in ("decode_tok_s", "step_s"):
            vals = [r["bench"][key] for r in rows
                    if r["binary"] == binary and kind in r["bench"] and key in r["bench"]]
            if vals:
                print(f"{binary:4} {name:16} ({'generation' if kind == 'decode_tok_s' else 'training'}): "
                      f"median {statistics.median(vals):.4g}, range {min(vals):.4g}–{max(vals):.4g}, n={len(vals)}")
