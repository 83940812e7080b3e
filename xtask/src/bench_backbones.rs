//! `cargo xtask bench backbones [--rounds N] [--models a,b]`: Glaze against llama.cpp's own
//! `llama-bench`, built natively for this CPU (`llama_build`), on the GGUF backbones of
//! `split_assets::SPLITS` (default Qwen2.5-Coder 0.5B and Gemma 3 270M, both Q4_K_M); writes
//! `docs/benchmarks-backbones.md`.
//!
//! Every round runs each model once on each engine, each run a fresh process, the engines'
//! order alternating from round to round so that neither always runs on a machine the other
//! has just warmed (or heated). The report gives the median and the min–max of the rounds.
//! Both engines are timed the same way: one timed run after loading, no warm-up run
//! (`llama-bench --no-warmup`, `glaze bench --reps 1`), 2 threads, a 256-token prompt and 64
//! decoded tokens after it. Peak RSS of both comes from GNU time (`%M`, the whole process).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bench::{DECODE, PROMPT, THREADS, capture, error_row, field, machine, text_field};
use crate::fetch::cache_dir;
use crate::llama_build::{CMAKE_FLAGS, llama_bench};
use crate::root;

const ROUNDS: usize = 5;
const MODELS: &str = "qwen2.5-0.5b,gemma3-270m";
/// GNU time, for every run's peak RSS.
const TIME: &str = "/usr/bin/time";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Engine {
    Glaze,
    LlamaCpp,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Glaze => "glaze",
            Engine::LlamaCpp => "llama.cpp",
        }
    }
}

/// A backbone: its name in `SPLITS`, its joined GGUF file and that file's size.
struct Model {
    name: String,
    path: PathBuf,
    bytes: u64,
}

/// One engine's measurement of one model in one round (NaN where the run failed).
struct Run {
    round: usize,
    model: String,
    engine: Engine,
    prefill: f64,
    decode: f64,
    rss_mib: f64,
    /// `{"round", "model", "engine", "max_rss_kib", "output": [the engine's JSON lines]}`.
    raw: String,
}

/// What one engine printed and its peak RSS.
struct Measured {
    prefill: f64,
    decode: f64,
    rss_kib: f64,
    lines: Vec<String>,
}

/// Everything the report's header states.
struct Header {
    command: String,
    machine: String,
    rounds: usize,
    llama_commit: String,
    /// `llama-bench` flags of the prefill and the decode run (after `-m FILE`).
    llama_prefill: Vec<String>,
    llama_decode: Vec<String>,
    depth: bool,
}

pub fn bench_backbones(args: &[String]) -> Result<(), String> {
    let (rounds, names) = parse_args(args)?;
    if !Path::new(TIME).exists() {
        return Err(format!(
            "{TIME} (GNU time) measures peak RSS and is missing: `apt-get install time`"
        ));
    }
    let paths = names
        .iter()
        .map(|n| gguf_path(n))
        .collect::<Result<Vec<_>, _>>()?;
    crate::fetch::fetch(&names)?;
    let models = names
        .iter()
        .zip(paths)
        .map(|(name, path)| {
            let bytes = std::fs::metadata(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .len();
            Ok(Model {
                name: name.clone(),
                path,
                bytes,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    crate::run(Command::new(&cargo).args(["build", "-p", "glaze-cli", "--bins"]))?;
    let glaze = crate::target_dir().join("debug/glaze");
    let llama = llama_bench()?;
    let help = Command::new(&llama.bin)
        .arg("--help")
        .output()
        .map_err(|e| format!("cannot start {}: {e}", llama.bin.display()))?;
    let depth = String::from_utf8_lossy(&help.stdout).contains("--n-depth");
    let (llama_prefill, llama_decode) = llama_args(depth);
    let mut runs = Vec::new();
    for round in 0..rounds {
        for m in &models {
            let order = if round % 2 == 0 {
                [Engine::Glaze, Engine::LlamaCpp]
            } else {
                [Engine::LlamaCpp, Engine::Glaze]
            };
            for engine in order {
                eprintln!(
                    "bench backbones: round {}/{rounds}, {}, {}",
                    round + 1,
                    m.name,
                    engine.name()
                );
                let measured = match engine {
                    Engine::Glaze => run_glaze(&glaze, &m.path),
                    Engine::LlamaCpp => {
                        run_llama(&llama.bin, &m.path, &llama_prefill, &llama_decode)
                    }
                };
                runs.push(Run::new(round, &m.name, engine, measured));
            }
        }
    }
    // The sdist has no git history: the commit is the one its changelog names, compiled in
    // (`build_number` in the raw lines means nothing).
    let llama_commit = runs
        .iter()
        .filter(|r| r.engine == Engine::LlamaCpp)
        .find_map(|r| text_field(&r.raw, "build_commit"))
        .or(llama.commit)
        .map_or_else(
            || "commit unknown".into(),
            |c| format!("llama.cpp commit {c}"),
        );
    let header = Header {
        command: format!(
            "cargo xtask bench backbones --rounds {rounds} --models {}",
            names.join(",")
        ),
        machine: machine(),
        rounds,
        llama_commit,
        llama_prefill,
        llama_decode,
        depth,
    };
    crate::bench::write_keeping_notes(
        &root().join("docs/benchmarks-backbones.md"),
        &render(&header, &models, &runs),
    )
}

fn parse_args(args: &[String]) -> Result<(usize, Vec<String>), String> {
    let (mut rounds, mut models) = (ROUNDS, MODELS.to_string());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--rounds" => {
                rounds = value()?
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or("--rounds takes a positive whole number")?;
            }
            "--models" => models = value()?,
            _ => {
                return Err(format!(
                    "unknown argument `{arg}` (usage: cargo xtask bench backbones \
                     [--rounds N] [--models a,b])"
                ));
            }
        }
    }
    let names: Vec<String> = models
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err("--models names no model".into());
    }
    Ok((rounds, names))
}

/// The joined GGUF of a split backbone, where `cargo xtask fetch` puts it.
pub(crate) fn gguf_path(name: &str) -> Result<PathBuf, String> {
    let splits = crate::split_assets::SPLITS;
    let split = splits.iter().find(|s| s.name == name).ok_or_else(|| {
        let known: Vec<&str> = splits.iter().map(|s| s.name).collect();
        format!(
            "`{name}` is not a GGUF backbone (known: {})",
            known.join(", ")
        )
    })?;
    Ok(cache_dir().join(split.dir).join(split.file))
}

/// `llama-bench` flags (after `-m FILE`) of the prefill run and of the decode run: a test
/// each, one repetition without warm-up, JSON lines. Decode runs after a 256-token context
/// (`-d`) where this `llama-bench` has it.
fn llama_args(depth: bool) -> (Vec<String>, Vec<String>) {
    let test = |p: usize, n: usize| -> Vec<String> {
        format!("-t {THREADS} -r 1 --no-warmup -o jsonl -p {p} -n {n}")
            .split(' ')
            .map(str::to_string)
            .collect()
    };
    let mut decode = test(0, DECODE);
    if depth {
        decode.extend(["-d".into(), PROMPT.to_string()]);
    }
    (test(PROMPT, 0), decode)
}

/// Runs `cmd` under GNU time: its stdout and its peak RSS in KiB.
fn timed(cmd: &Command) -> Result<(String, f64), String> {
    // One file per call: calls may overlap (the tests run in parallel).
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let rss_file =
        std::env::temp_dir().join(format!("glaze-bench-rss-{}-{call}", std::process::id()));
    let mut wrapped = Command::new(TIME);
    wrapped
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    let out = capture(&mut wrapped);
    let rss = std::fs::read_to_string(&rss_file).unwrap_or_default();
    let _ = std::fs::remove_file(&rss_file);
    let out = out?;
    // The last line: GNU time puts a note about a failed command before it.
    let kib = rss
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("{TIME} reported no peak RSS (`{}`)", rss.trim()))?;
    Ok((out, kib))
}

fn run_glaze(glaze: &Path, model: &Path) -> Result<Measured, String> {
    let mut cmd = Command::new(glaze);
    cmd.env("GLAZE_SHARED", crate::shared_dir())
        .env("RAYON_NUM_THREADS", THREADS.to_string())
        .arg("bench")
        .arg("--model")
        .arg(model)
        .args(["--prompt-tokens", &PROMPT.to_string()])
        .args(["--decode-tokens", &DECODE.to_string()])
        .args(["--reps", "1"]);
    let (out, rss_kib) = timed(&cmd)?;
    let line = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("glaze bench printed no JSON line: {out}"))?;
    let number =
        |key: &str| field(line, key).ok_or_else(|| format!("glaze bench printed no {key}: {line}"));
    Ok(Measured {
        prefill: number("prefill_tok_s")?,
        decode: number("decode_tok_s")?,
        rss_kib,
        lines: vec![line.to_string()],
    })
}

/// `llama-bench`'s JSON line of the test with `n_prompt` prompt and `n_gen` generated tokens,
/// and its tokens per second (`avg_ts`).
fn llama_result(out: &str, n_prompt: usize, n_gen: usize) -> Result<(f64, String), String> {
    let line = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find(|l| {
            field(l, "n_prompt") == Some(n_prompt as f64) && field(l, "n_gen") == Some(n_gen as f64)
        })
        .ok_or_else(|| format!("llama-bench printed no pp{n_prompt}/tg{n_gen} line: {out}"))?;
    let ts = field(line, "avg_ts").ok_or_else(|| format!("llama-bench gave no avg_ts: {line}"))?;
    Ok((ts, line.to_string()))
}

/// Two processes, the prefill test and the decode test; the peak RSS is the larger.
fn run_llama(
    bin: &Path,
    model: &Path,
    prefill: &[String],
    decode: &[String],
) -> Result<Measured, String> {
    let mut rss_kib = 0f64;
    let mut lines = Vec::new();
    let mut speeds = Vec::new();
    for (args, n_prompt, n_gen) in [(prefill, PROMPT, 0), (decode, 0, DECODE)] {
        let mut cmd = Command::new(bin);
        cmd.arg("-m").arg(model).args(args);
        let (out, kib) = timed(&cmd)?;
        let (ts, line) = llama_result(&out, n_prompt, n_gen)?;
        rss_kib = rss_kib.max(kib);
        speeds.push(ts);
        lines.push(line);
    }
    Ok(Measured {
        prefill: speeds[0],
        decode: speeds[1],
        rss_kib,
        lines,
    })
}

impl Run {
    fn new(round: usize, model: &str, engine: Engine, measured: Result<Measured, String>) -> Run {
        let head = format!(
            "{{\"round\": {}, \"model\": \"{model}\", \"engine\": \"{}\"",
            round + 1,
            engine.name()
        );
        match measured {
            Ok(m) => Run {
                round,
                model: model.to_string(),
                engine,
                prefill: m.prefill,
                decode: m.decode,
                rss_mib: m.rss_kib / 1024.0,
                raw: format!(
                    "{head}, \"max_rss_kib\": {}, \"output\": [{}]}}",
                    m.rss_kib,
                    m.lines.join(", ")
                ),
            },
            Err(e) => {
                eprintln!("bench backbones: {} on {model} failed: {e}", engine.name());
                Run {
                    round,
                    model: model.to_string(),
                    engine,
                    prefill: f64::NAN,
                    decode: f64::NAN,
                    rss_mib: f64::NAN,
                    raw: format!("{head}, \"output\": [{}]}}", error_row(engine.name(), &e)),
                }
            }
        }
    }
}

/// The median of the finite values (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `median [min–max] (n of m)`, the count only where some runs failed.
fn spread(values: &[f64], digits: usize) -> String {
    let ok: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let Some(mid) = median(&ok) else {
        return "– (every run failed)".into();
    };
    let (lo, hi) = ok
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let mut s = format!("{mid:.digits$} [{lo:.digits$}–{hi:.digits$}]");
    if ok.len() < values.len() {
        s.push_str(&format!(" ({} of {} runs)", ok.len(), values.len()));
    }
    s
}

/// Which number of a run a table row shows.
type Pick = fn(&Run) -> f64;

fn render(h: &Header, models: &[Model], runs: &[Run]) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let values = |model: &str, engine: Engine, pick: fn(&Run) -> f64| -> Vec<f64> {
        runs.iter()
            .filter(|r| r.model == model && r.engine == engine)
            .map(pick)
            .collect()
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    };
    let decode_what = if h.depth {
        format!("decode tok/s ({DECODE} tokens after {PROMPT})")
    } else {
        format!("decode tok/s ({DECODE} tokens; llama.cpp from an empty context)")
    };
    let measures: [(String, Pick, usize); 3] = [
        (format!("prefill tok/s ({PROMPT} tokens)"), |r| r.prefill, 1),
        (decode_what, |r| r.decode, 1),
        ("peak RSS MiB".into(), |r| r.rss_mib, 0),
    ];
    let mut speed = String::from(
        "| model | measure | Glaze | llama.cpp | Glaze ÷ llama.cpp |\n|---|---|---|---|---|\n",
    );
    let mut memory = String::from(
        "| model | file MiB | Glaze peak RSS ÷ file | llama.cpp peak RSS ÷ file |\n|---|---|---|---|\n",
    );
    for m in models {
        for (i, (what, pick, digits)) in measures.iter().enumerate() {
            let g = values(&m.name, Engine::Glaze, *pick);
            let l = values(&m.name, Engine::LlamaCpp, *pick);
            speed.push_str(&format!(
                "| {} | {what} | {} | {} | {} |\n",
                if i == 0 { m.name.as_str() } else { "" },
                spread(&g, *digits),
                spread(&l, *digits),
                ratio(median(&g), median(&l))
            ));
        }
        let file_mib = m.bytes as f64 / MIB;
        let per_file = |e: Engine| {
            median(&values(&m.name, e, |r| r.rss_mib))
                .map_or_else(|| "–".into(), |v| format!("{:.2}", v / file_mib))
        };
        memory.push_str(&format!(
            "| {} | {file_mib:.0} | {} | {} |\n",
            m.name,
            per_file(Engine::Glaze),
            per_file(Engine::LlamaCpp)
        ));
    }
    let files = models
        .iter()
        .map(|m| {
            format!(
                "`{}`",
                m.path.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut raw: Vec<&Run> = runs.iter().collect();
    raw.sort_by_key(|r| r.round);
    let depth_note = if h.depth {
        format!(
            "llama.cpp's decode test runs at depth {PROMPT} (`-d {PROMPT}`: a {PROMPT}-token \
             context filled untimed first), so both engines decode after a {PROMPT}-token prompt"
        )
    } else {
        format!(
            "this `llama-bench` has no `-d`, so its decode test starts from an empty context \
             while Glaze decodes after its {PROMPT}-token prompt"
        )
    };
    format!(
        "# Benchmarks: Glaze against llama.cpp's `llama-bench` on the GGUF backbones\n\n\
         Regenerate with `{}` (hand-written notes, from a \"## Notes\" heading on, are \
         kept).\n\
         Machine: {}. Models: {files}.\n\n\
         - Rounds: {}. Each round runs every model on both engines, each run a fresh process, \
         the engines' order alternating from round to round. Cells are the median [min–max] \
         over the rounds; the ratio is of the medians (speed: above 1 means Glaze is faster; \
         memory: above 1 means Glaze holds more).\n\
         - Glaze: `glaze bench --model FILE --prompt-tokens {PROMPT} --decode-tokens {DECODE} \
         --reps 1`, `RAYON_NUM_THREADS={THREADS}`, default mode (8-bit activations), one \
         greedy generation: prefill of the prompt, then {DECODE} tokens.\n\
         - llama.cpp: `llama-bench -m FILE {}` (prefill) and `llama-bench -m FILE {}` \
         (decode), two processes per round; {depth_note}. llama-bench feeds random token ids \
         and does not sample; its other settings are its defaults (batch 2048, micro-batch 512, \
         flash attention auto, f16 KV cache, weights repacked for the CPU, the file memory-mapped: \
         mapped pages count in its RSS). Built from the llama.cpp tree vendored in `{}` ({}) with CMake \
         `{}`.\n\
         - Neither engine gets a warm-up run: each process loads the model and is timed once.\n\
         - Peak RSS: GNU time's maximum resident set size of the whole process, for both \
         engines (llama.cpp: the larger of its two processes).\n\n\
         ## Results\n\n{speed}\n## Memory against the file size\n\n{memory}\n\
         Raw results (one line per engine, model and round; `output` is what the engine \
         printed):\n\n```json\n{}\n```\n",
        h.command,
        h.machine,
        h.rounds,
        h.llama_prefill.join(" "),
        h.llama_decode.join(" "),
        crate::bench::LLAMA_CPP,
        h.llama_commit,
        CMAKE_FLAGS.join(" "),
        raw.iter()
            .map(|r| r.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_skips_failed_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0, f64::NAN, 1.0]), Some(3.0));
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn spread_gives_median_range_and_failures() {
        assert_eq!(spread(&[10.0, 30.0, 20.0], 1), "20.0 [10.0–30.0]");
        assert_eq!(
            spread(&[10.0, f64::NAN, 20.0], 0),
            "15 [10–20] (2 of 3 runs)"
        );
        assert_eq!(spread(&[f64::NAN], 1), "– (every run failed)");
    }

    #[test]
    fn arguments_default_and_parse() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            args(&[]).expect("defaults"),
            (5, vec!["qwen2.5-0.5b".into(), "gemma3-270m".into()])
        );
        assert_eq!(
            args(&["--models", "gemma3-270m", "--rounds", "2"]).expect("parses"),
            (2, vec!["gemma3-270m".into()])
        );
        assert!(args(&["--rounds", "0"]).is_err());
        assert!(args(&["--rounds"]).is_err());
        assert!(args(&["--models", ","]).is_err());
        assert!(args(&["--fast"]).is_err());
        assert!(gguf_path("smollm2").is_err(), "not a split GGUF backbone");
        assert!(
            gguf_path("gemma3-270m")
                .expect("known")
                .ends_with("gemma3-270m/gemma-3-270m-q4_k_m.gguf")
        );
    }

    #[test]
    fn llama_bench_runs_one_test_each_at_depth_when_it_can() {
        let (prefill, decode) = llama_args(true);
        assert_eq!(
            prefill.join(" "),
            "-t 2 -r 1 --no-warmup -o jsonl -p 256 -n 0"
        );
        assert_eq!(
            decode.join(" "),
            "-t 2 -r 1 --no-warmup -o jsonl -p 0 -n 64 -d 256"
        );
        assert!(!llama_args(false).1.contains(&"-d".to_string()));
    }

    #[test]
    fn timed_reads_the_peak_rss_of_the_whole_process() {
        if !Path::new(TIME).exists() {
            eprintln!("skipped: no {TIME}");
            return;
        }
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo \"$GREETING\""]).env("GREETING", "hi");
        let (out, kib) = timed(&cmd).expect("runs");
        assert_eq!(out, "hi\n");
        assert!(kib > 100.0, "{kib} KiB");
        let mut failing = Command::new("sh");
        failing.args(["-c", "exit 3"]);
        assert!(timed(&failing).is_err());
    }

    #[test]
    fn the_report_gives_medians_ratios_and_failed_runs() {
        let measured = |prefill, decode, rss_kib| {
            Ok(Measured {
                prefill,
                decode,
                rss_kib,
                lines: vec!["{\"x\": 1}".into()],
            })
        };
        let runs = vec![
            Run::new(0, "m", Engine::Glaze, measured(100.0, 20.0, 102400.0)),
            Run::new(0, "m", Engine::LlamaCpp, measured(200.0, 40.0, 51200.0)),
            Run::new(1, "m", Engine::LlamaCpp, measured(400.0, 20.0, 51200.0)),
            Run::new(1, "m", Engine::Glaze, Err("boom \"x\"".into())),
        ];
        let header = Header {
            command: "cargo xtask bench backbones --rounds 2 --models m".into(),
            machine: "a CPU".into(),
            rounds: 2,
            llama_commit: "abc".into(),
            llama_prefill: llama_args(true).0,
            llama_decode: llama_args(true).1,
            depth: true,
        };
        let model = Model {
            name: "m".into(),
            path: PathBuf::from("/x/m.gguf"),
            bytes: 50 * 1024 * 1024,
        };
        let report = render(&header, &[model], &runs);
        assert!(report.contains(
            "| m | prefill tok/s (256 tokens) | 100.0 [100.0–100.0] (1 of 2 runs) | \
             300.0 [200.0–400.0] | 0.33× |"
        ));
        assert!(
            report.contains("| peak RSS MiB | 100 [100–100] (1 of 2 runs) | 50 [50–50] | 2.00× |")
        );
        assert!(report.contains("| m | 50 | 2.00 | 1.00 |"), "{report}");
        assert!(report.contains("-p 0 -n 64 -d 256"));
        assert!(report.contains(
            "{\"round\": 2, \"model\": \"m\", \"engine\": \"glaze\", \"output\": \
             [{\"engine\": \"glaze\", \"error\": \"boom 'x'\"}]}"
        ));
    }

    /// `llama-bench -o jsonl` lines of this tree (0.3.36's llama.cpp 0c1e57098), captured with
    /// `-p 32 -n 0` on Qwen2.5 and `-p 0 -n 8 -d 32` on Gemma 3.
    const LLAMA_PP: &str = r#"{"build_commit": "0c1e57098", "build_number": 1, "cpu_info": "AMD EPYC", "gpu_info": "", "backends": "CPU", "model_filename": "/root/.cache/glaze/qwen2.5-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "model_type": "qwen2 1B Q4_K - Medium", "model_size": 485452288, "model_n_params": 630167424, "n_batch": 2048, "n_ubatch": 512, "n_threads": 2, "cpu_mask": "0x0", "cpu_strict": false, "poll": 50, "type_k": "f16", "type_v": "f16", "n_gpu_layers": -1, "n_cpu_moe": 0, "split_mode": "layer", "main_gpu": 0, "no_kv_offload": false, "flash_attn": -1, "devices": "auto", "tensor_split": "0.00", "tensor_buft_overrides": "none", "load_mode": "auto", "lazy_mode": "auto", "embeddings": false, "no_op_offload": 0, "no_host": false, "repack": true, "fit_target": 0, "fit_min_ctx": 0, "n_prompt": 32, "n_gen": 0, "n_depth": 0, "test_time": "2026-12-07T22:08:45Z", "avg_ns": 3377241371, "stddev_ns": 0, "avg_ts": 9.475189, "stddev_ts": 0.000000, "samples_ns": [ 3377241371 ],"samples_ts": [ 9.47519 ]}"#;
    const LLAMA_TG: &str = r#"{"build_commit": "0c1e57098", "build_number": 1, "cpu_info": "AMD EPYC", "gpu_info": "", "backends": "CPU", "model_filename": "/root/.cache/glaze/gemma3-270m/gemma-3-270m-q4_k_m.gguf", "model_type": "gemma3 270M Q4_K - Medium", "model_size": 246587904, "model_n_params": 268098176, "n_batch": 2048, "n_ubatch": 512, "n_threads": 2, "cpu_mask": "0x0", "cpu_strict": false, "poll": 50, "type_k": "f16", "type_v": "f16", "n_gpu_layers": -1, "n_cpu_moe": 0, "split_mode": "layer", "main_gpu": 0, "no_kv_offload": false, "flash_attn": -1, "devices": "auto", "tensor_split": "0.00", "tensor_buft_overrides": "none", "load_mode": "auto", "lazy_mode": "auto", "embeddings": false, "no_op_offload": 0, "no_host": false, "repack": true, "fit_target": 0, "fit_min_ctx": 0, "n_prompt": 0, "n_gen": 8, "n_depth": 32, "test_time": "2026-12-07T22:08:52Z", "avg_ns": 1681564679, "stddev_ns": 0, "avg_ts": 4.757474, "stddev_ts": 0.000000, "samples_ns": [ 1681564679 ],"samples_ts": [ 4.75747 ]}"#;

    #[test]
    fn llama_bench_lines_are_picked_by_test_and_parsed() {
        let out = format!("{LLAMA_PP}\n{LLAMA_TG}\n");
        let (ts, line) = llama_result(&out, 32, 0).expect("prefill line");
        assert_eq!(ts, 9.475189);
        assert_eq!(line, LLAMA_PP);
        let (ts, line) = llama_result(&out, 0, 8).expect("decode line");
        assert_eq!(ts, 4.757474);
        assert_eq!(field(line.as_str(), "n_depth"), Some(32.0));
        assert_eq!(
            text_field(&line, "build_commit").as_deref(),
            Some("0c1e57098")
        );
        let err = llama_result(&out, 256, 0).expect_err("no pp256 line");
        assert!(err.contains("pp256/tg0"), "{err}");
        assert!(llama_result("llama_model_load: error\n", 32, 0).is_err());
    }

    /// `run_glaze` passes `glaze bench` its flags and reads its JSON line (a stand-in script
    /// that prints the line `crates/glaze-cli/src/bench.rs` prints).
    #[test]
    fn glaze_runs_are_read_from_their_json_line() {
        if !Path::new(TIME).exists() {
            eprintln!("skipped: no {TIME}");
            return;
        }
        let dir = std::env::temp_dir().join(format!("glaze-xtask-bb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let script = dir.join("glaze");
        std::fs::write(
            &script,
            "#!/bin/sh\n\
             [ \"$*\" = \"bench --model /m.gguf --prompt-tokens 256 --decode-tokens 64 --reps 1\" ] \
             || exit 9\n\
             [ \"$RAYON_NUM_THREADS\" = 2 ] || exit 8\n\
             echo 'loading'\n\
             echo '{\"engine\":\"glaze\",\"mode\":\"8-bit activations\",\"prefill_tok_s\":812.5,\
             \"decode_tok_s\":61.25,\"peak_rss_mb\":300.0}'\n",
        )
        .expect("script");
        let chmod = Command::new("chmod").arg("+x").arg(&script).status();
        assert!(chmod.is_ok_and(|s| s.success()));
        let m = run_glaze(&script, Path::new("/m.gguf")).expect("runs");
        assert_eq!((m.prefill, m.decode), (812.5, 61.25));
        assert!(m.rss_kib > 0.0);
        assert_eq!(m.lines.len(), 1);
        assert!(m.lines[0].starts_with("{\"engine\":\"glaze\""));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
