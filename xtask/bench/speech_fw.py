"""faster-whisper as the peer of Glaze's speech plugin, for `cargo xtask results speech` and
`cargo xtask bench`.

transcribe MODEL_DIR THREADS LIST.jsonl OUT.jsonl
    LIST lines: {"set": ..., "path": ..., "ref": ...}. Transcribes every clip with
    faster-whisper (CTranslate2, float32 on the CPU, beam 1, no VAD, English, no timestamps)
    and writes {"set", "ref", "hyp"} lines: the WER is computed by `glaze speech wer`, with the
    same normalisation as Glaze's own transcripts.
encode MODEL_DIR THREADS REPS FILE [FILE ...]
    Decode (faster-whisper's PyAV decoder) + log-mel (its FeatureExtractor, padded to 30 s as
    faster-whisper always runs the encoder) + CTranslate2 encoder, per clip; the median of REPS
    after one warm-up. Prints one JSON line with audio seconds and wall seconds per clip.
"""
import json
import statistics
import sys
import time

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio
from faster_whisper.feature_extractor import FeatureExtractor


def transcribe(model_dir, threads, listing, out):
    model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=threads)
    with open(listing) as f, open(out, "w") as o:
        for line in f:
            item = json.loads(line)
            segments, _ = model.transcribe(
                item["path"], language="en", beam_size=1, vad_filter=False,
                without_timestamps=True, condition_on_previous_text=False)
            hyp = " ".join(s.text.strip() for s in segments)
            o.write(json.dumps({"set": item["set"], "ref": item["ref"], "hyp": hyp}) + "\n")


def encode(model_dir, threads, reps, files):
    model = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="float32",
                                       intra_threads=threads)
    fe = FeatureExtractor(feature_size=model.n_mels)
    rows = []
    for path in files:
        def once():
            t0 = time.perf_counter()
            audio = decode_audio(path, sampling_rate=16000)
            mel = fe(audio, padding=160)
            mel = np.pad(mel, ((0, 0), (0, max(0, 3000 - mel.shape[1]))))[:, :3000]
            x = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
            model.encode(x, to_cpu=True)
            return time.perf_counter() - t0, len(audio) / 16000
        once()
        times = [once() for _ in range(reps)]
        rows.append({"file": path, "audio_secs": times[0][1],
                     "secs": statistics.median(t for t, _ in times)})
    print(json.dumps({"peer": "faster-whisper " + __import__("faster_whisper").__version__
                      + " / ctranslate2 " + ctranslate2.__version__, "clips": rows}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "transcribe":
        transcribe(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif cmd == "encode":
        encode(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
    else:
        sys.exit("usage: speech_fw.py transcribe|encode ...")
