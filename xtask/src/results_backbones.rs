//! `cargo xtask results backbones [--models a,b] [--tasks timeseries,vision,speech] [--fresh]
//! [--table]`:
//! the same adapters trained on each frozen backbone, and the table of
//! docs/results/backbones.md.
//!
//! Each backbone has its own results files (`docs/results/backbones/<name>/<task>.jsonl`) and
//! run directories (`$GLAZE_CACHE/backbone-runs/<name>/…`, checkpoints included): a finished row
//! is skipped and an interrupted run resumes from its last checkpoint, so the work can span
//! sessions. The table is rewritten from whatever rows exist, missing ones shown as such.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::fetch::cache_dir;
use crate::{root, run, shared_dir};

/// The backbones, in table order: fetch name and what the table calls it.
const BACKBONES: [(&str, &str); 3] = [
    ("smollm2", "SmolLM2-135M-Instruct (Q4_1)"),
    ("qwen2.5-0.5b", "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)"),
    ("gemma3-270m", "Gemma 3 270M (Q4_K_M)"),
];
const TASKS: [&str; 3] = ["timeseries", "vision", "speech"];
/// Optimizer steps of the FSDD frame-stacking runs.
const SPEECH_STEPS: &str = "300";

pub fn results_backbones(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--table") {
        return write_table();
    }
    let (models, tasks, fresh) = parse_args(args)?;
    let mut fetch_names: Vec<String> = ["smollm2", "dinov2", "textiles", "whisper-tiny"]
        .map(String::from)
        .to_vec();
    fetch_names.extend(models.iter().filter(|m| *m != "smollm2").cloned());
    crate::fetch::fetch(&fetch_names)?;
    run(crate::cargo().args(["build", "-p", "glaze-cli"]))?;
    let glaze = crate::target_dir().join("debug/glaze");
    for name in &models {
        let model = match name.as_str() {
            "smollm2" => None,
            other => Some(crate::bench_backbones::gguf_path(other)?),
        };
        let out = results_dir().join(name);
        let runs = cache_dir().join("backbone-runs").join(name);
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        for task in &tasks {
            let results = out.join(format!("{task}.jsonl"));
            if fresh {
                let _ = std::fs::remove_file(&results);
                let _ = std::fs::remove_dir_all(runs.join(task));
            }
            let mut cmd = Command::new(&glaze);
            cmd.env("GLAZE_SHARED", shared_dir())
                .env("RAYON_NUM_THREADS", "2");
            let scratch = runs.join(format!("{task}.md"));
            match task.as_str() {
                "timeseries" => {
                    cmd.args(["timeseries", "sweep", "--data-dir"])
                        .arg(shared_dir().join("data/ett"))
                        .args(["--datasets", "ETTh1", "--horizons", "96", "--seeds", "1,2"])
                        .args(["--forecasters", "time-llm,no-llm"])
                        .args(crate::TIMESERIES_SETUP)
                        .arg("--markdown")
                        .arg(&scratch)
                        .arg("--runs")
                        .arg(runs.join(task));
                }
                "vision" => {
                    cmd.args([
                        "vision",
                        "sweep",
                        "--tasks",
                        "textiles",
                        "--adapters",
                        "mlp",
                    ])
                    .args(crate::VISION_SETUP)
                    .arg("--markdown")
                    .arg(&scratch)
                    .arg("--runs")
                    .arg(runs.join(task));
                }
                _ => {
                    let dir = runs.join(task).join("frame-stack-s0");
                    if dir.join("report.json").exists() {
                        eprintln!("results backbones: {name} speech done ({})", dir.display());
                        continue;
                    }
                    cmd.args(["speech", "train", "--adapter", "frame-stack"])
                        .args(["--steps", SPEECH_STEPS, "--synthetic", "false"])
                        .args(crate::SPEECH_TRAIN)
                        .arg("--out")
                        .arg(&dir);
                }
            }
            if let Some(m) = &model {
                cmd.arg("--model").arg(m);
            }
            run(cmd.arg("--results").arg(&results))?;
        }
    }
    write_table()
}

/// Rewrites the page's table from the results files as they are (`--table`: no runs).
fn write_table() -> Result<(), String> {
    let md = root().join("docs/results/backbones.md");
    let text = std::fs::read_to_string(&md).map_err(|e| format!("{}: {e}", md.display()))?;
    let table = render(&results_dir());
    std::fs::write(&md, replace_between_markers(&text, &table)?)
        .map_err(|e| format!("{}: {e}", md.display()))?;
    eprintln!("results backbones: wrote {}", md.display());
    Ok(())
}

fn results_dir() -> PathBuf {
    root().join("docs/results/backbones")
}

fn parse_args(args: &[String]) -> Result<(Vec<String>, Vec<String>, bool), String> {
    let mut models: Vec<String> = BACKBONES.iter().map(|b| b.0.to_string()).collect();
    let mut tasks: Vec<String> = TASKS.iter().map(|t| t.to_string()).collect();
    let mut fresh = false;
    let mut it = args.iter();
    let list = |v: Option<&String>, known: &[&str], what: &str| -> Result<Vec<String>, String> {
        let v = v.ok_or_else(|| format!("--{what} needs a value"))?;
        let names: Vec<String> = v
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        match names.iter().find(|n| !known.contains(&n.as_str())) {
            Some(bad) => Err(format!(
                "unknown {what} `{bad}` (known: {})",
                known.join(", ")
            )),
            None if names.is_empty() => Err(format!("--{what} names nothing")),
            None => Ok(names),
        }
    };
    let known_models: Vec<&str> = BACKBONES.iter().map(|b| b.0).collect();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--models" => models = list(it.next(), &known_models, "models")?,
            "--tasks" => tasks = list(it.next(), &TASKS, "tasks")?,
            "--fresh" => fresh = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}` (results backbones [--models a,b] \
                     [--tasks timeseries,vision,speech] [--fresh] [--table])"
                ));
            }
        }
    }
    Ok((models, tasks, fresh))
}

fn replace_between_markers(text: &str, table: &str) -> Result<String, String> {
    let (begin, end) = ("<!-- sweep:begin -->", "<!-- sweep:end -->");
    match (text.find(begin), text.find(end)) {
        (Some(a), Some(b)) if a < b => Ok(format!("{}{begin}\n{table}{}", &text[..a], &text[b..])),
        _ => Err(format!(
            "docs/results/backbones.md lacks the `{begin}` … `{end}` markers"
        )),
    }
}

/// The JSON lines of one results file (none when it does not exist yet).
fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Mean ± half the range of the values, or "–" when there are none.
fn mean_half_range(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{mean:.digits$} ± {:.digits$}", (hi - lo) / 2.0)
}

fn f64_at(row: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(row, |v, k| v.get(k))?.as_f64()
}

fn seconds(v: Option<f64>) -> String {
    v.map_or("–".into(), |s| format!("{s:.0}"))
}

fn percent(v: Option<f64>) -> String {
    v.map_or("–".into(), |w| format!("{:.1} %", 100.0 * w))
}

fn share(v: Option<f64>) -> String {
    v.map_or("–".into(), |a| format!("{a:.3}"))
}

/// The three tables, from the results files under `dir`.
fn render(dir: &Path) -> String {
    let mut s = String::from(
        "### Time-LLM on ETTh1, L = 96, H = 96 (seeds 1 and 2, mean ± half-range)\n\n\
         | backbone | time-llm test MSE | time-llm MAE | no-llm MSE (control) | no-llm MAE | \
         time-llm train s/run | seeds |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, label) in BACKBONES {
        let ts = rows(&dir.join(name).join("timeseries.jsonl"));
        let of = |model: &str, key: &str| -> Vec<f64> {
            ts.iter()
                .filter(|r| r["model"] == model && r["dataset"] == "ETTh1" && r["horizon"] == 96)
                .filter_map(|r| r[key].as_f64())
                .collect()
        };
        let secs = of("time-llm", "train_seconds");
        let mean_secs = (!secs.is_empty()).then(|| secs.iter().sum::<f64>() / secs.len() as f64);
        s += &format!(
            "| {label} | {} | {} | {} | {} | {} | {} |\n",
            mean_half_range(&of("time-llm", "mse"), 4),
            mean_half_range(&of("time-llm", "mae"), 4),
            mean_half_range(&of("no-llm", "mse"), 4),
            mean_half_range(&of("no-llm", "mae"), 4),
            seconds(mean_secs),
            of("time-llm", "mse").len(),
        );
    }
    s += "\n### Textile defects, MLP projector (150 held-out images, answers in words)\n\n\
          | backbone | class named | exact answer | no image (frozen LLM, no soft tokens) | \
          linear probe (no LLM) | train s | test s |\n|---|---|---|---|---|---|---|\n";
    for (name, label) in BACKBONES {
        let v = rows(&dir.join(name).join("vision.jsonl"));
        let run = v
            .iter()
            .find(|r| r["adapter"] == "mlp" && r["task"] == "textiles");
        let base = v
            .iter()
            .find(|r| r["adapter"] == "baselines" && r["task"] == "textiles");
        let at = |r: Option<&Value>, p: &[&str]| r.and_then(|r| f64_at(r, p));
        s += &format!(
            "| {label} | {} | {} | {} | {} | {} | {} |\n",
            share(at(run, &["scores", "class_accuracy"])),
            share(at(run, &["scores", "accuracy"])),
            share(at(base, &["no_image", "class_accuracy"])),
            share(at(base, &["linear_probe"])),
            seconds(at(run, &["train_secs"])),
            seconds(at(run, &["test_secs"])),
        );
    }
    s += &format!(
        "\n### FSDD spoken digits, frame stacking ({SPEECH_STEPS} steps, FSDD only)\n\n\
         | backbone | FSDD test WER | jfk.wav WER | train s |\n|---|---|---|---|\n"
    );
    for (name, label) in BACKBONES {
        let v = rows(&dir.join(name).join("speech.jsonl"));
        let run = v.iter().find(|r| r["adapter"] == "frame-stack");
        let at = |p: &[&str]| run.and_then(|r| f64_at(r, p));
        s += &format!(
            "| {label} | {} | {} | {} |\n",
            percent(at(&["scores", "fsdd", "wer"])),
            percent(at(&["scores", "jfk", "wer"])),
            seconds(at(&["train_secs"])),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_default_and_reject_unknown_names() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let (m, t, f) = a(&[]).expect("defaults");
        assert_eq!((m.len(), t.len(), f), (3, 3, false));
        let (m, t, f) = a(&["--models", "gemma3-270m", "--tasks", "speech", "--fresh"]).unwrap();
        assert_eq!(
            (m, t, f),
            (vec!["gemma3-270m".into()], vec!["speech".into()], true)
        );
        assert!(
            a(&["--models", "llama"])
                .unwrap_err()
                .contains("unknown models `llama`")
        );
        assert!(a(&["--tasks"]).is_err());
        assert!(a(&["--rounds"]).is_err());
    }

    #[test]
    fn the_tables_show_means_spreads_and_missing_rows() {
        let dir = std::env::temp_dir().join(format!("glaze-backbones-{}", std::process::id()));
        let qwen = dir.join("qwen2.5-0.5b");
        std::fs::create_dir_all(&qwen).unwrap();
        let ts = [("time-llm", 0.40, 100.0), ("time-llm", 0.44, 120.0), ("no-llm", 0.41, 9.0)]
            .map(|(m, mse, secs)| {
                format!(
                    r#"{{"dataset":"ETTh1","horizon":96,"model":"{m}","mse":{mse},"mae":0.5,"train_seconds":{secs}}}"#
                )
            })
            .join("\n");
        std::fs::write(qwen.join("timeseries.jsonl"), ts).unwrap();
        std::fs::write(
            qwen.join("speech.jsonl"),
            r#"{"adapter":"frame-stack","scores":{"fsdd":{"wer":0.05},"jfk":{"wer":1.0}},"train_secs":42.4}"#,
        )
        .unwrap();
        let t = render(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            t.contains("| Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) | 0.4200 ± 0.0200 | 0.5000 ± 0.0000 | 0.4100 ± 0.0000 | 0.5000 ± 0.0000 | 110 | 2 |"),
            "{t}"
        );
        assert!(
            t.contains("| Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) | 5.0 % | 100.0 % | 42 |"),
            "{t}"
        );
        assert!(
            t.contains("| Gemma 3 270M (Q4_K_M) | – | – | – | – | – | – |"),
            "{t}"
        );
        let md = replace_between_markers(
            "a\n<!-- sweep:begin -->\nold\n<!-- sweep:end -->\nb",
            "new\n",
        )
        .unwrap();
        assert_eq!(md, "a\n<!-- sweep:begin -->\nnew\n<!-- sweep:end -->\nb");
        assert!(replace_between_markers("no markers", "x").is_err());
    }
}
