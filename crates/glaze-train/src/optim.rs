//! AdamW (Loshchilov & Hutter 2019) over an adapter's parameters, with global-norm gradient
//! clipping.
//!
//! The update runs on host vectors keyed by parameter name: only the adapter's parameters
//! ever have state here (the backbone has none to give), the state is saved in checkpoints
//! under stable names, and the arithmetic is the same on every device, so a resumed run
//! reproduces an uninterrupted one bit for bit.

use std::collections::BTreeMap;

use burn::prelude::*;

use glaze_kernels::adamw::{Coeffs, update, update_from_product};

use glaze_core::params::{HostGrads, NamedTensor, update_params};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWSettings {
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Denominator epsilon. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay. Default 0.01.
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        AdamWSettings {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// The optimizer and its state: step count and both moments of every parameter it updated.
///
/// Each update takes the parameters' values out of the module (without a copy when the
/// module holds the only reference), updates them in place and gives them back.
#[derive(Debug, Clone)]
pub struct AdamW {
    /// Hyper-parameters.
    pub settings: AdamWSettings,
    /// Updates applied so far.
    pub t: u64,
    moments: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
}

/// What one update did.
#[derive(Debug, Clone, Copy)]
pub struct UpdateStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// True when the gradients were scaled down to the clipping norm.
    pub clipped: bool,
}

impl AdamW {
    /// A fresh optimizer.
    pub fn new(settings: AdamWSettings) -> Self {
        AdamW {
            settings,
            t: 0,
            moments: BTreeMap::new(),
        }
    }

    /// Applies one update with learning rate `lr`; gradients whose global norm exceeds
    /// `clip_norm` are scaled down to it first.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: HostGrads,
        lr: f64,
        clip_norm: Option<f64>,
    ) -> (M, UpdateStats) {
        let grad_norm = grads.norm();
        // Clipping scales the gradients inside the update (the same f32 product as scaling
        // them first: a pass over every gradient less).
        let (clipped, scale) = match clip_norm {
            Some(c) if grad_norm > c && grad_norm.is_finite() => (true, (c / grad_norm) as f32),
            _ => (false, 1.0),
        };
        self.t += 1;
        let s = self.settings;
        let t = self.t as i32;
        let bc1 = 1.0 - s.beta1.powi(t);
        let bc2 = 1.0 - s.beta2.powi(t);
        let moments = &mut self.moments;
        let coeffs = Coeffs {
            scale,
            b1: s.beta1 as f32,
            b2: s.beta2 as f32,
            decay: (1.0 - lr * s.weight_decay) as f32,
            step: lr as f32,
            eps: s.eps as f32,
            r1: (1.0 / bc1) as f32,
            r2: (1.0 / bc2) as f32,
        };
        let module = update_params(module, |name, read| {
            if let Some(g) = grads.products.get(name) {
                let (m, v) = moments
                    .entry(name.to_string())
                    .or_insert_with(|| (vec![0.0; g.len()], vec![0.0; g.len()]));
                let mut p = read();
                update_from_product(&mut p, g, m, v, coeffs);
                return Some(p);
            }
            let g = grads.grads.get(name)?;
            let (m, v) = moments
                .entry(name.to_string())
                .or_insert_with(|| (vec![0.0; g.len()], vec![0.0; g.len()]));
            let mut p = read();
            update(&mut p, g, m, v, coeffs);
            Some(p)
        });
        (module, UpdateStats { grad_norm, clipped })
    }

    /// Number of `f32` values of optimizer state (two moments per updated parameter).
    pub fn state_len(&self) -> usize {
        self.moments.values().map(|(m, v)| m.len() + v.len()).sum()
    }

    /// The state as named tensors (`m.<param>` and `v.<param>`), for checkpoints.
    pub fn export_state(&self) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        for (name, (m, v)) in &self.moments {
            for (prefix, data) in [("m", m), ("v", v)] {
                out.push(NamedTensor {
                    name: format!("{prefix}.{name}"),
                    shape: vec![data.len()],
                    data: data.clone(),
                });
            }
        }
        out
    }

    /// Restores state written by [`AdamW::export_state`]; `None` when a moment lacks its pair.
    pub fn import_state(
        settings: AdamWSettings,
        t: u64,
        tensors: Vec<NamedTensor>,
    ) -> Option<Self> {
        let mut ms = BTreeMap::new();
        let mut vs = BTreeMap::new();
        for nt in tensors {
            if let Some(name) = nt.name.strip_prefix("m.") {
                ms.insert(name.to_string(), nt.data);
            } else if let Some(name) = nt.name.strip_prefix("v.") {
                vs.insert(name.to_string(), nt.data);
            } else {
                return None;
            }
        }
        if ms.len() != vs.len() {
            return None;
        }
        let mut moments = BTreeMap::new();
        for (name, m) in ms {
            let v = vs.remove(&name)?;
            if v.len() != m.len() {
                return None;
            }
            moments.insert(name, (m, v));
        }
        Some(AdamW {
            settings,
            t,
            moments,
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::optim::GradientsParams;
    use glaze_kernels::gemm;
    use glaze_kernels::product_grad::{Deferred, ProductSink, matmul_q8_t_param};
    use glaze_kernels::testing::{deferred_and_plain, q8_matrix, values};

    use super::*;
    use glaze_core::params::export_params;

    /// A parameter in two products with the same matrix, and then also used directly: its
    /// collected gradient is the ordinary one — still a product in the first case (the factors
    /// added), formed and summed with the direct part in the second.
    #[test]
    fn a_parameter_used_twice_or_directly_gets_its_whole_gradient() {
        if !gemm::available() {
            return;
        }
        let device = Device::flex().autodiff();
        let (v, p, d) = (300, 4, 64);
        let e = q8_matrix(v, d);
        let module = glaze_core::rng::seeded_module(&device, 2, |dv| {
            LinearConfig::new(v, p).with_bias(false).init(dv)
        });
        let name = export_params(&module)[0].name.clone();
        let r = Tensor::<2>::from_data(TensorData::new(values(p * d, 6), [p, d]), &device);
        let loss = |direct: bool, sink: Option<&ProductSink>| {
            let a = matmul_q8_t_param(&module.weight, &e, false, sink);
            let b = matmul_q8_t_param(&module.weight, &e, false, sink);
            let l = (a * r.clone()).sum() + (b * r.clone() * 2.0).sum();
            let w = module.weight.val();
            if direct { l + (w.clone() * w).sum() } else { l }
        };
        let collect = |loss: Tensor<1>, products: Vec<Deferred>| {
            let mut g = loss.backward();
            let products = products
                .into_iter()
                .filter_map(|x| x.take(&mut g))
                .collect();
            HostGrads::collect(&module, GradientsParams::from_grads(g, &module), products)
        };
        for direct in [false, true] {
            let plain = collect(loss(direct, None), Vec::new());
            let sink = ProductSink::new();
            let l = loss(direct, Some(&sink));
            let deferred = sink.take();
            assert_eq!(deferred.len(), 2);
            let got = collect(l, deferred);
            assert_eq!(
                got.products.is_empty(),
                direct,
                "a product unless used directly"
            );
            let have = match (got.grads.get(&name), got.products.get(&name)) {
                (Some(g), None) => g.clone(),
                (None, Some(p)) => p.dense(),
                other => panic!("one gradient for {name}, got {other:?}"),
            };
            for (x, y) in have.iter().zip(&plain.grads[&name]) {
                assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{x} vs {y}");
            }
        }
    }

    /// AdamW from the deferred product updates the parameter and its moments exactly as from
    /// the formed gradient; with clipping, its norm comes from the Gram matrix (equal up to
    /// rounding, so the updates agree to rounding).
    #[test]
    fn adamw_from_a_product_is_adamw_from_its_gradient() {
        if !gemm::available() {
            return;
        }
        let (v, p) = (3000, 5);
        let (_, product) = deferred_and_plain(v, p, 64);
        let device = Device::flex().autodiff();
        let module =
            glaze_core::rng::seeded_module(&device, 1, |d| LinearConfig::new(v, p).init(d));
        let names: Vec<String> = export_params(&module).into_iter().map(|t| t.name).collect();
        let (weight, bias) = (names[0].clone(), names[1].clone());
        let bias_grad = values(p, 8);
        for clip in [None, Some(1e-3)] {
            let mut formed = HostGrads::default();
            formed.grads.insert(weight.clone(), product.dense());
            formed.grads.insert(bias.clone(), bias_grad.clone());
            let mut deferred = HostGrads::default();
            deferred.products.insert(weight.clone(), product.clone());
            deferred.grads.insert(bias.clone(), bias_grad.clone());
            let run = |g: HostGrads| {
                let mut opt = AdamW::new(AdamWSettings::default());
                let (m, stats) = opt.step(module.clone(), g.clone(), 1e-2, clip);
                let (m, _) = opt.step(m, g, 1e-2, clip);
                (export_params(&m), opt.export_state(), stats)
            };
            let (pa, sa, ta) = run(formed);
            let (pb, sb, tb) = run(deferred);
            assert_eq!(ta.clipped, tb.clipped);
            assert!((ta.grad_norm - tb.grad_norm).abs() <= 1e-5 * ta.grad_norm);
            let tol = if clip.is_some() { 1e-5 } else { 0.0 };
            for (x, y) in pa.iter().chain(&sa).zip(pb.iter().chain(&sb)) {
                assert_eq!(x.name, y.name);
                for (a, b) in x.data.iter().zip(&y.data) {
                    assert!(
                        (a - b).abs() <= tol * a.abs().max(1e-3),
                        "{}: {a} vs {b}",
                        x.name
                    );
                }
            }
        }
    }
}
