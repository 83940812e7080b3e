//! The results tables of `docs/results/vision.md`, rendered from the rows a sweep writes.

fn f3(v: &serde_json::Value) -> String {
    v.as_f64().map_or_else(|| "—".into(), |x| format!("{x:.3}"))
}

/// The tables of docs/results/vision.md from the sweep's result rows, one per run (and one
/// `baselines` row per task).
pub fn results_tables(rows: &[serde_json::Value]) -> String {
    let mut t = String::new();
    for task in ["textiles", "shapes"] {
        let runs: Vec<&serde_json::Value> = rows
            .iter()
            .filter(|r| r["task"] == task && r["adapter"] != "baselines")
            .collect();
        let base = rows
            .iter()
            .find(|r| r["task"] == task && r["adapter"] == "baselines");
        if runs.is_empty() && base.is_none() {
            continue;
        }
        let items = base.map_or(serde_json::Value::Null, |b| b["test_items"].clone());
        if task == "textiles" {
            t.push_str(&format!(
                "\n### Textile defects: test accuracy ({items} held-out images, answers generated in words)\n\n\
                 | method | soft tokens / image | trainable params | steps × batch | seed | class named | exact answer | train s | test s |\n\
                 |---|---|---|---|---|---|---|---|---|\n"
            ));
        } else {
            t.push_str(&format!(
                "\n### Generated shapes: caption scores ({items} held-out scenes)\n\n\
                 | method | soft tokens / image | trainable params | steps × batch | seed | exact | colour | shape | size | position | count | train s |\n\
                 |---|---|---|---|---|---|---|---|---|---|---|---|\n"
            ));
        }
        for r in &runs {
            let s = &r["scores"];
            let head = format!(
                "| {} | {} | {} | {} × {} | {} ",
                r["adapter"].as_str().unwrap_or("?"),
                r["tokens"],
                r["params"],
                r["steps"],
                r["batch"],
                r["seed"]
            );
            if task == "textiles" {
                t.push_str(&format!(
                    "{head}| {} | {} | {:.0} | {:.0} |\n",
                    f3(&s["class_accuracy"]),
                    f3(&s["accuracy"]),
                    r["train_secs"].as_f64().unwrap_or(0.0),
                    r["test_secs"].as_f64().unwrap_or(0.0)
                ));
            } else {
                t.push_str(&format!(
                    "{head}| {} | {} | {} | {} | {} | {} | {:.0} |\n",
                    f3(&s["exact"]),
                    f3(&s["colour"]),
                    f3(&s["shape"]),
                    f3(&s["size"]),
                    f3(&s["position"]),
                    f3(&s["count"]),
                    r["train_secs"].as_f64().unwrap_or(0.0)
                ));
            }
        }
        if let Some(b) = base {
            let n = &b["no_image"];
            if task == "textiles" {
                t.push_str(&format!(
                    "| no image (frozen LLM, same prompt, no soft tokens) | 0 | 0 | — | — | {} | {} | — | — |\n\
                     | majority class (train split) | — | — | — | — | {m} | {m} | — | — |\n\
                     | linear probe on frozen CLS + mean patch | — | 2,307 | — | — | {} | — | — | — |\n",
                    f3(&n["class_accuracy"]),
                    f3(&n["accuracy"]),
                    f3(&b["linear_probe"]),
                    m = f3(&b["majority"])
                ));
            } else {
                t.push_str(&format!(
                    "| no image (frozen LLM, same prompt, no soft tokens) | 0 | 0 | — | — | {} | {} | {} | {} | {} | {} | — |\n",
                    f3(&n["exact"]),
                    f3(&n["colour"]),
                    f3(&n["shape"]),
                    f3(&n["size"]),
                    f3(&n["position"]),
                    f3(&n["count"])
                ));
            }
        }
    }
    t
}
