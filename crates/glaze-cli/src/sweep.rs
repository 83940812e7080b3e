//! `glaze timeseries sweep`: every (dataset, horizon, model, seed), resumable, and the
//! markdown table of docs/results/timeseries.md.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use glaze::timeseries::{self as ts, ModelKind, baselines::repeat_last};

use crate::ModelArgs;
use crate::timeseries_args::{Kind, Setup, cache_root, spec};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct SweepRow {
    dataset: String,
    horizon: usize,
    model: String,
    seed: u64,
    mse: f64,
    mae: f64,
    best_val: Option<f64>,
    steps: usize,
    train_seconds: f64,
    test_seconds: f64,
    examples: [usize; 3],
    trainable_params: usize,
    prefix_cache: Option<(usize, usize)>,
}

/// Where a sweep keeps its results, its table and its run directories.
#[derive(clap::Args, Clone)]
pub struct SweepFiles {
    /// Finished runs, one JSON per line (a sweep resumes by skipping them).
    #[arg(long)]
    pub results: PathBuf,
    /// Markdown file whose table (between its sweep markers) is rewritten.
    #[arg(long)]
    pub markdown: PathBuf,
    /// Folder of the run directories.
    #[arg(long)]
    pub runs: PathBuf,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sweep(
    data_dir: &Path,
    datasets: &[String],
    horizons: &[usize],
    seeds: &[u64],
    models: &[Kind],
    files: &SweepFiles,
    setup: &Setup,
    llm: &ModelArgs,
) -> Res<()> {
    let (results, markdown, runs) = (&files.results, &files.markdown, &files.runs);
    let model = crate::load(llm)?;
    let mut done: Vec<SweepRow> = std::fs::read_to_string(results)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let cache = cache_root(setup);
    for ds in datasets {
        let data = data_dir.join(format!("{ds}.csv"));
        for &h in horizons {
            for &k in models {
                let kind: ModelKind = k.into();
                for &seed in seeds {
                    let key = |r: &SweepRow| {
                        r.dataset == *ds
                            && r.horizon == h
                            && r.model == kind.name()
                            && r.seed == seed
                    };
                    if done.iter().any(key) {
                        continue;
                    }
                    let spec = spec(setup, &data, Some("OT".into()), h, kind, seed, &model);
                    let dir = runs.join(format!("{ds}-{h}-{}-s{seed}", kind.name()));
                    eprintln!("sweep: {ds} H={h} {} seed {seed}", kind.name());
                    let (_, o) = ts::run(
                        &model.llama,
                        &model.tokenizer,
                        &spec,
                        Some(&dir),
                        cache.as_deref(),
                        true,
                    )?;
                    let row = SweepRow {
                        dataset: ds.clone(),
                        horizon: h,
                        model: kind.name().into(),
                        seed,
                        mse: o.test.mse(),
                        mae: o.test.mae(),
                        best_val: o.best_val,
                        steps: o.report.steps,
                        train_seconds: o.train_seconds,
                        test_seconds: o.test_seconds,
                        examples: o.examples,
                        trainable_params: o.report.trainable_params,
                        prefix_cache: o.prefix_cache,
                    };
                    eprintln!(
                        "sweep: {ds} H={h} {} seed {seed}: MSE {:.4} MAE {:.4} ({:.0} s)",
                        kind.name(),
                        row.mse,
                        row.mae,
                        row.train_seconds
                    );
                    record(results, &mut done, row)?;
                }
            }
            // Repeat-last needs no training; one row per (dataset, horizon).
            if !done
                .iter()
                .any(|r| r.dataset == *ds && r.horizon == h && r.model == "repeat-last")
            {
                let spec = spec(
                    setup,
                    &data,
                    Some("OT".into()),
                    h,
                    ModelKind::Dlinear,
                    0,
                    &model,
                );
                let base = repeat_last(&ts::experiment::load_data(&spec)?.test);
                let row = SweepRow {
                    dataset: ds.clone(),
                    horizon: h,
                    model: "repeat-last".into(),
                    seed: 0,
                    mse: base.mse(),
                    mae: base.mae(),
                    best_val: None,
                    steps: 0,
                    train_seconds: 0.0,
                    test_seconds: 0.0,
                    examples: [0, 0, 0],
                    trainable_params: 0,
                    prefix_cache: None,
                };
                record(results, &mut done, row)?;
            }
        }
    }
    write_table(&done, markdown)?;
    Ok(())
}

/// Appends a finished run to the results file (so a sweep resumes after it) and to `done`.
fn record(results: &Path, done: &mut Vec<SweepRow>, row: SweepRow) -> Res<()> {
    append_json_line(results, &row)?;
    done.push(row);
    Ok(())
}

/// Appends one JSON line to a results file (creating it and its folder).
pub(crate) fn append_json_line(path: &Path, row: &impl serde::Serialize) -> Res<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{}", serde_json::to_string(row)?)?;
    Ok(())
}

/// Replaces the text between `<!-- sweep:begin -->` and `<!-- sweep:end -->` of a markdown
/// file (appending the markers when they are missing).
pub(crate) fn replace_between_markers(path: &Path, table: &str) -> Res<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let begin = "<!-- sweep:begin -->";
    let end = "<!-- sweep:end -->";
    let new = match (text.find(begin), text.find(end)) {
        (Some(a), Some(b)) if a < b => format!("{}{begin}\n{table}{}", &text[..a], &text[b..]),
        _ => format!("{text}\n{begin}\n{table}{end}\n"),
    };
    std::fs::write(path, new)?;
    Ok(())
}

fn mean_spread(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (m, (hi - lo) / 2.0)
}

fn write_table(rows: &[SweepRow], path: &Path) -> Res<()> {
    let mut groups: BTreeMap<(String, usize, String), Vec<&SweepRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.dataset.clone(), r.horizon, r.model.clone()))
            .or_default()
            .push(r);
    }
    let mut t = String::from(
        "| dataset | H | model | seeds | test MSE (mean ± half-range) | test MAE | train s/run | trainable params |\n|---|---|---|---|---|---|---|---|\n",
    );
    for ((ds, h, m), rs) in &groups {
        let (mse, dm) = mean_spread(&rs.iter().map(|r| r.mse).collect::<Vec<_>>());
        let (mae, da) = mean_spread(&rs.iter().map(|r| r.mae).collect::<Vec<_>>());
        let secs = rs.iter().map(|r| r.train_seconds).sum::<f64>() / rs.len() as f64;
        t.push_str(&format!(
            "| {ds} | {h} | {m} | {} | {mse:.4} ± {dm:.4} | {mae:.4} ± {da:.4} | {secs:.0} | {} |\n",
            rs.len(),
            rs[0].trainable_params
        ));
    }
    replace_between_markers(path, &t)
}
