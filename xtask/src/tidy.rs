//! `cargo xtask tidy`: the conventions of `docs/ARCHITECTURE.md`, checked mechanically.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The one crate allowed `unsafe` code: the SIMD kernels and the allocator settings. Every
/// other crate's root has `#![forbid(unsafe_code)]`.
const KERNEL_CRATE: &str = "glaze-kernels";

/// Plugin crates: they may depend on the seam, the kernels, the training engine and encoder
/// crates, never on each other.
const PLUGINS: &[&str] = &[
    "glaze-vision",
    "glaze-audio",
    "glaze-speech",
    "glaze-timeseries",
];
/// Encoder crates: frozen encoders any plugin may use through a normal dependency.
const ENCODERS: &[&str] = &["glaze-whisper", "glaze-vit", "glaze-patch"];
/// What each layer below the plugins may depend on.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "glaze-whisper",
        &["glaze-core", "glaze-kernels", "glaze-train"],
    ),
    ("glaze-vit", &["glaze-core", "glaze-kernels"]),
    ("glaze-patch", &["glaze-core"]),
    ("glaze-kernels", &[]),
    ("glaze-core", &["glaze-kernels"]),
    ("glaze-train", &["glaze-core", "glaze-kernels"]),
    ("glaze-llm", &["glaze-core", "glaze-kernels"]),
    ("glaze-serve", &["glaze"]),
    ("glaze-cli", &["glaze", "glaze-serve"]),
];
/// What a plugin may depend on.
const PLUGIN_DEPS: &[&str] = &["glaze-core", "glaze-kernels", "glaze-train"];
/// A CLI module parses arguments and prints; more than this many lines means library logic.
const MAX_CLI_LINES: usize = 300;
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
        if let Some((_, allowed)) = LAYERS.iter().find(|(layer, _)| *layer == name) {
            for dep in deps.iter().filter(|d| !allowed.contains(&d.as_str())) {
                problems.push(format!(
                    "{name} must not depend on {dep} (allowed: {allowed:?})"
                ));
            }
        }
        if PLUGINS.contains(&name.as_str()) {
            for dep in &deps {
                let allowed =
                    PLUGIN_DEPS.contains(&dep.as_str()) || ENCODERS.contains(&dep.as_str());
                if !allowed {
                    problems.push(format!("plugin {name} must not depend on {dep}"));
                }
            }
        }
        if name != KERNEL_CRATE {
            let root_file = ["src/lib.rs", "src/main.rs"]
                .iter()
                .map(|f| dir.join(f))
                .find(|f| f.exists());
            if let Some(root_file) = root_file
                && !read(&root_file)?.contains("#![forbid(unsafe_code)]")
            {
                problems.push(format!(
                    "crates/{name}: the crate root must have `#![forbid(unsafe_code)]` (only {KERNEL_CRATE} has unsafe code)"
                ));
            }
        } else if !read(&dir.join("src/lib.rs"))?.contains("clippy::undocumented_unsafe_blocks") {
            problems.push(format!(
                "crates/{name}: lib.rs must deny `clippy::undocumented_unsafe_blocks` (a SAFETY comment on every unsafe block)"
            ));
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
            if name != KERNEL_CRATE
                && text.contains("unsafe_code")
                && !text.contains("#![forbid(unsafe_code)]")
            {
                problems.push(format!(
                    "{rel}: `unsafe` is allowed only in crates/{KERNEL_CRATE}"
                ));
            }
            if name == "glaze-cli" && lines > MAX_CLI_LINES {
                problems.push(format!(
                    "{rel}: {lines} lines; a CLI module parses arguments and prints (limit {MAX_CLI_LINES}): move the logic into a library or xtask"
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
