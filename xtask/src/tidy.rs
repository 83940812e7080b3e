//! `cargo xtask tidy`: the conventions of `docs/ARCHITECTURE.md`, checked mechanically.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The SIMD kernel files (run-time feature checks, asserted lengths) and the allocator
/// settings (`mallopt`): the only ones allowed `unsafe`.
const UNSAFE_FILES: [&str; 11] = [
    "glaze-core/src/vmath.rs",
    "glaze-core/src/optim.rs",
    "glaze-llm/src/qkernels.rs",
    "glaze-llm/src/tiles.rs",
    "glaze-llm/src/qint8.rs",
    "glaze-llm/src/vecops.rs",
    "glaze-core/src/gemm.rs",
    "glaze-core/src/gemm/q8.rs",
    "glaze-core/src/gemm/kernel.rs",
    "glaze-core/src/gemm/transpose.rs",
    "glaze-core/src/alloc.rs",
];

/// Plugin crates: each may depend on `glaze-core` only (and `glaze-speech` on `glaze-audio`).
const PLUGINS: &[&str] = &[
    "glaze-vision",
    "glaze-audio",
    "glaze-speech",
    "glaze-timeseries",
];
const MAX_LINES: usize = 800;
const WEIGHT_EXTENSIONS: &[&str] = &[
    "gguf",
    "safetensors",
    "onnx",
    "bin",
    "pt",
    "pth",
    "npy",
    "npz",
];

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Names of `glaze*` crates a manifest depends on (normal dependencies only).
fn glaze_deps(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps
            && line.starts_with("glaze")
            && let Some(name) = line.split(['=', '.', ' ']).next()
        {
            deps.push(name.trim().to_string());
        }
    }
    deps
}

pub fn tidy(root: &Path) -> Result<(), String> {
    let mut problems = Vec::new();
    let crates_dir = root.join("crates");
    let mut crates: Vec<PathBuf> = std::fs::read_dir(&crates_dir)
        .map_err(|e| format!("cannot list {}: {e}", crates_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    crates.sort();
    let architecture = read(&root.join("docs/ARCHITECTURE.md")).unwrap_or_default();
    if architecture.is_empty() {
        problems.push("docs/ARCHITECTURE.md is missing".to_string());
    }
    for dir in &crates {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let manifest = read(&dir.join("Cargo.toml"))?;
        if !manifest.contains(&format!("name = \"{name}\"")) {
            problems.push(format!(
                "crates/{name}: package name must equal the folder name"
            ));
        }
        if !dir.join("README.md").exists() {
            problems.push(format!("crates/{name}: README.md is missing"));
        }
        let lib = dir.join("src/lib.rs");
        if lib.exists() && !read(&lib)?.contains("#![doc = include_str!(\"../README.md\")]") {
            problems.push(format!(
                "crates/{name}: lib.rs must use README.md as crate docs"
            ));
        }
        if !manifest.contains("[lints]") {
            problems.push(format!(
                "crates/{name}: must inherit [lints] from the workspace"
            ));
        }
        if !architecture.contains(&format!("`{name}`")) {
            problems.push(format!(
                "docs/ARCHITECTURE.md: codemap does not mention `{name}`"
            ));
        }
        let deps = glaze_deps(&manifest);
        if name == "glaze-core" && !deps.is_empty() {
            problems.push(format!(
                "glaze-core must not depend on other glaze crates: {deps:?}"
            ));
        }
        if PLUGINS.contains(&name.as_str()) {
            for dep in &deps {
                let allowed =
                    dep == "glaze-core" || (name == "glaze-speech" && dep == "glaze-audio");
                if !allowed {
                    problems.push(format!("plugin {name} must not depend on {dep}"));
                }
            }
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let text = read(&file)?;
            let rel = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let lines = text.lines().count();
            if lines > MAX_LINES {
                problems.push(format!(
                    "{rel}: {lines} lines (split it; limit {MAX_LINES})"
                ));
            }
            let rel_unix = rel.replace('\\', "/");
            if text.contains("allow(unsafe_code)")
                && !UNSAFE_FILES.iter().any(|f| rel_unix.ends_with(f))
            {
                problems.push(format!(
                    "{rel}: `unsafe` is allowed only in {}",
                    UNSAFE_FILES.join(", ")
                ));
            }
            if name != "glaze-cli" {
                let body = text.split("#[cfg(test)]").next().unwrap_or("");
                for (i, line) in body.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    if code.contains("Result<") && code.contains(", String>") {
                        problems.push(format!("{rel}:{}: `Result<_, String>` in library code; use the crate's error type", i + 1));
                    }
                    if code.contains("println!") || code.contains("eprintln!") {
                        problems.push(format!(
                            "{rel}:{}: printing in library code; use `tracing`",
                            i + 1
                        ));
                    }
                }
            }
        }
    }
    // Weights and data are fetched, never committed.
    let tracked = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run git ls-files: {e}"))?;
    for file in tracked.stdout.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let rel = String::from_utf8_lossy(file).into_owned();
        let path = root.join(&rel);
        if WEIGHT_EXTENSIONS
            .iter()
            .any(|e| rel.ends_with(&format!(".{e}")))
        {
            problems.push(format!(
                "{rel}: weights or data arrays must not be committed"
            ));
        }
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > 512 * 1024) {
            problems.push(format!("{rel}: files over 512 KiB must not be committed"));
        }
    }
    if problems.is_empty() {
        eprintln!("tidy: ok ({} crates)", crates.len());
        Ok(())
    } else {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        Err(format!("tidy found {} problem(s)", problems.len()))
    }
}
