//! llama.cpp's `llama-bench` and `llama-server`, built from source natively for this CPU, for
//! `cargo xtask bench backbones` and `cargo xtask bench serve`.
//!
//! The source is the llama.cpp tree vendored in the pinned llama-cpp-python sdist
//! (`bench::LLAMA_CPP`, checked against its sha256), so the peer is the same llama.cpp that
//! `cargo xtask bench` runs through Python. CMake and Ninja come from PyPI into the `build-venv`
//! virtual environment. The binary is linked statically and cached under
//! `$GLAZE_CACHE/llama.cpp-bin/<version>-<cpu>/`: `GGML_NATIVE=ON` compiles for the CPU it is
//! built on, so another CPU (other model name or feature flags) gets a build of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::bench::{LLAMA_CPP, venv};
use crate::fetch::{cache_dir, sha256_file};
use crate::run;

/// sha256 of `llama_cpp_python-0.3.36.tar.gz` on PyPI.
const SDIST_SHA256: &str = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
/// The build tools, pinned.
const BUILD_TOOLS: &[&str] = &["cmake==4.4.5", "ninja==1.13.2"];
/// CMake options of the native build. `GGML_NATIVE` compiles ggml's CPU backend with
/// `-march=native`; only the library, its common utilities and the tools are configured
/// (`LLAMA_BUILD_TOOLS` brings `llama-bench`, `LLAMA_BUILD_SERVER` `llama-server`), without
/// HTTPS (`LLAMA_OPENSSL`; `LLAMA_CURL` is deprecated and ignored in this tree), statically
/// linked so each binary can be cached.
pub(crate) const CMAKE_FLAGS: &[&str] = &[
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
];

/// The built binary and what it was built from.
pub(crate) struct LlamaBench {
    pub(crate) bin: PathBuf,
    /// The llama.cpp commit the sdist's changelog names for this version (also compiled in as
    /// `LLAMA_BUILD_COMMIT`, so `llama-bench` reports it as `build_commit`).
    pub(crate) commit: Option<String>,
}

/// The llama-cpp-python version of `LLAMA_CPP` (`"0.3.36"`).
fn version() -> &'static str {
    LLAMA_CPP.rsplit("==").next().unwrap_or(LLAMA_CPP)
}

/// A short key of this CPU: its model name and feature flags, hashed.
fn cpu_key() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let wanted = |prefix: &str| {
        info.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or("")
            .to_string()
    };
    let digest = Sha256::digest(format!("{}\n{}", wanted("model name"), wanted("flags")));
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The commit of the first `update llama.cpp to ggml-org/llama.cpp@<commit>` line in the
/// `## [version]` section of llama-cpp-python's changelog.
pub(crate) fn changelog_commit(changelog: &str, version: &str) -> Option<String> {
    let heading = format!("## [{version}]");
    let section = &changelog[changelog.find(&heading)? + heading.len()..];
    let section = &section[..section.find("\n## [").unwrap_or(section.len())];
    let at = section.find("llama.cpp@")? + "llama.cpp@".len();
    let commit: String = section[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (!commit.is_empty()).then_some(commit)
}

/// The unpacked sdist (downloaded, checked and unpacked when missing).
fn sdist_tree() -> Result<PathBuf, String> {
    let dir = cache_dir().join("llama.cpp-src");
    let tree = dir.join(format!("llama_cpp_python-{}", version()));
    if tree.join("vendor/llama.cpp/CMakeLists.txt").exists() {
        return Ok(tree);
    }
    let archive = dir.join(format!("llama_cpp_python-{}.tar.gz", version()));
    if !archive.exists() {
        // Only this package from source: its build dependencies come as wheels.
        run(Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps"])
            .args(["--no-binary", "llama-cpp-python", "-d"])
            .arg(&dir)
            .arg(LLAMA_CPP))?;
    }
    let got = sha256_file(&archive)?;
    if got != SDIST_SHA256 {
        let _ = std::fs::remove_file(&archive);
        return Err(format!(
            "{} has sha256 {got}, expected {SDIST_SHA256} (removed; run again)",
            archive.display()
        ));
    }
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir))?;
    if !tree.join("vendor/llama.cpp/CMakeLists.txt").exists() {
        return Err(format!(
            "{} holds no vendor/llama.cpp tree",
            archive.display()
        ));
    }
    Ok(tree)
}

/// `build-venv` with CMake and Ninja.
fn build_tools() -> Result<PathBuf, String> {
    let dir = venv("build-venv");
    let has = |tool: &str| dir.join("bin").join(tool).exists();
    if !(has("cmake") && has("ninja")) {
        if !dir.join("bin/python").exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        }
        run(Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet"])
            .args(BUILD_TOOLS))?;
    }
    Ok(dir.join("bin"))
}

/// `llama-bench` for this version and CPU, built when not cached.
pub(crate) fn llama_bench() -> Result<LlamaBench, String> {
    llama_tool("llama-bench")
}

/// llama.cpp's tool `target` (`llama-bench`, `llama-server`) for this version and CPU, built
/// when not cached.
pub(crate) fn llama_tool(target: &str) -> Result<LlamaBench, String> {
    let key = format!("{}-{}", version(), cpu_key());
    let out = cache_dir().join("llama.cpp-bin").join(&key);
    let bin = out.join(target);
    let commit_file = out.join("commit");
    if bin.exists() {
        let commit = std::fs::read_to_string(&commit_file)
            .ok()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        eprintln!("bench: {target} ok ({})", bin.display());
        return Ok(LlamaBench { bin, commit });
    }
    let tree = sdist_tree()?;
    let commit = std::fs::read_to_string(tree.join("CHANGELOG.md"))
        .ok()
        .and_then(|c| changelog_commit(&c, version()));
    let tools = build_tools()?;
    let build = cache_dir().join("llama.cpp-build").join(&key);
    let start = std::time::Instant::now();
    let mut configure = Command::new(tools.join("cmake"));
    configure
        .arg("-S")
        .arg(tree.join("vendor/llama.cpp"))
        .arg("-B")
        .arg(&build)
        .args(["-G", "Ninja"])
        .arg(format!(
            "-DCMAKE_MAKE_PROGRAM={}",
            tools.join("ninja").display()
        ))
        .args(CMAKE_FLAGS);
    if let Some(c) = &commit {
        configure.arg(format!("-DLLAMA_BUILD_COMMIT={c}"));
    }
    run(&mut configure)?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    run(Command::new(tools.join("cmake"))
        .arg("--build")
        .arg(&build)
        .args(["--target", target, "-j", &jobs.to_string()]))?;
    eprintln!(
        "bench: built {target} in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    install(&build.join("bin").join(target), &out, &bin)?;
    std::fs::write(&commit_file, commit.as_deref().unwrap_or(""))
        .map_err(|e| format!("cannot write {}: {e}", commit_file.display()))?;
    Ok(LlamaBench { bin, commit })
}

/// Copies the built binary into the cache through a temporary name, so a half-copied file is
/// never taken for a build.
fn install(built: &Path, out: &Path, bin: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let name = bin
        .file_name()
        .map_or("tool".into(), |n| n.to_string_lossy());
    let tmp = out.join(format!(".{name}.partial"));
    std::fs::copy(built, &tmp).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    std::fs::rename(&tmp, bin).map_err(|e| format!("cannot move into {}: {e}", bin.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_commit_is_read_from_the_version_section() {
        let log = "# Changelog\n\n## [Unreleased]\n\n## [0.3.36]\n\n\
                   - feat: update llama.cpp to ggml-org/llama.cpp@0c1e57098\n\n\
                   ## [0.3.35]\n\n- feat: update llama.cpp to ggml-org/llama.cpp@4df29be4f\n\
                   ## [0.3.34]\n\n- fix: something else\n";
        assert_eq!(
            changelog_commit(log, "0.3.36").as_deref(),
            Some("0c1e57098")
        );
        assert_eq!(
            changelog_commit(log, "0.3.35").as_deref(),
            Some("4df29be4f")
        );
        // A section without an update line does not borrow the next section's.
        assert_eq!(changelog_commit(log, "0.3.34"), None);
        assert_eq!(changelog_commit(log, "9.9.9"), None);
    }

    #[test]
    fn the_version_comes_from_the_pin() {
        assert_eq!(format!("llama-cpp-python=={}", version()), LLAMA_CPP);
        assert_eq!(cpu_key().len(), 12);
    }
}
