//! K-quant and 5-bit dequantization against gguf-py's reference (tests/fixtures/make_kquants.py).

use glaze::kernels::quant::{GgmlType, dequantize};

#[test]
fn k_quants_match_gguf_py() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/kquants.json");
    let text = std::fs::read_to_string(path).expect("fixture");
    let fixture: serde_json::Value = serde_json::from_str(&text).expect("json");
    for (name, ty) in [
        ("Q4_K", GgmlType::Q4K),
        ("Q6_K", GgmlType::Q6K),
        ("Q5_K", GgmlType::Q5K),
        ("Q5_0", GgmlType::Q5_0),
        ("Q5_1", GgmlType::Q5_1),
    ] {
        let bytes: Vec<u8> = fixture[name]["bytes"]
            .as_array()
            .expect("bytes")
            .iter()
            .map(|v| v.as_u64().expect("byte") as u8)
            .collect();
        let want: Vec<f32> = fixture[name]["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| v.as_f64().expect("value") as f32)
            .collect();
        let got = dequantize(ty, &bytes, want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                "{name} weight {i}: {g} vs {w}"
            );
        }
    }
}
