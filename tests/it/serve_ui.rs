//! The server's page at `/`: served by the binary itself, and driven in a real browser
//! (headless Chromium through chromedriver, installed by `.ci/run`; `cargo xtask ci` sets
//! `GLAZE_CHROMEDRIVER` and `GLAZE_CHROMIUM`): an image and a question answered in the page, a
//! series forecast and plotted.

use std::path::Path;

use crate::serve::{client_script, fixture, fixture_dir, png, request};

#[test]
fn the_page_and_the_adapter_list_are_served() {
    let f = fixture();
    let page = request(f.addr, "GET", "/", b"");
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body).expect("UTF-8");
    for id in [
        "id=\"prompt\"",
        "id=\"image-file\"",
        "id=\"record\"",
        "id=\"forecast-plot\"",
    ] {
        assert!(html.contains(id), "{id} in the page");
    }
    let list = request(f.addr, "GET", "/v1/adapters", b"").json();
    let names: Vec<&str> = list["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["vision", "speech", "forecast"]);
    // The fixture's adapters were written without a run, so their curves are empty.
    assert!(
        list["data"][0]["curve"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

#[test]
fn the_page_answers_an_image_and_plots_a_forecast_in_a_browser() {
    let (Some(driver), Some(chromium)) = (
        std::env::var_os("GLAZE_CHROMEDRIVER").filter(|p| !p.is_empty()),
        std::env::var_os("GLAZE_CHROMIUM").filter(|p| !p.is_empty()),
    ) else {
        eprintln!(
            "GLAZE_CHROMEDRIVER/GLAZE_CHROMIUM are not set (cargo xtask ci sets them): not run"
        );
        return;
    };
    let f = fixture();
    let image = fixture_dir().join("browser.png");
    std::fs::write(&image, png()).expect("writes");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/browser_ui.py");
    let seen = client_script(
        std::process::Command::new("python3")
            .arg(script)
            .arg(driver)
            .arg(chromium)
            .arg(format!("http://{}/", f.addr))
            .arg(&image),
    );
    assert!(
        seen["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("SmolLM2-135M-Instruct")),
        "{seen}"
    );
    assert_eq!(seen["adapters"], 3, "{seen}");
    assert_eq!(seen["answer_state"], "ok", "{seen}");
    assert!(
        seen["answer"]
            .as_str()
            .is_some_and(|a| !a.trim().is_empty()),
        "{seen}"
    );
    assert!(
        seen["user_line"]
            .as_str()
            .is_some_and(|u| u.contains("[image]")),
        "{seen}"
    );
    // The fixture's forecaster predicts 8 steps; both lines are drawn.
    assert_eq!(seen["forecast_points"], 8, "{seen}");
    assert!(seen["plot_colours"]["blue"].as_u64() > Some(50), "{seen}");
    assert!(seen["plot_colours"]["orange"].as_u64() > Some(20), "{seen}");
}
