//! A linear probe on frozen features (the classic check of what an encoder knows): multinomial
//! logistic regression on the CLS token concatenated with the mean patch token, trained by
//! full-batch gradient descent on standardised inputs. Host code; no LLM involved.

/// A trained probe.
#[derive(Debug, Clone)]
pub struct LinearProbe {
    mean: Vec<f32>,
    std: Vec<f32>,
    /// `[classes, dim]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
    classes: usize,
}

/// CLS + mean of the remaining tokens of one `[N, F]` feature array.
pub fn probe_input(features: &[f32], n: usize, f: usize) -> Vec<f32> {
    let mut x = features[..f].to_vec();
    let mut mean = vec![0.0f32; f];
    for row in features[f..n * f].chunks_exact(f) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    let k = (n - 1).max(1) as f32;
    x.extend(mean.into_iter().map(|m| m / k));
    x
}

impl LinearProbe {
    /// Fits `classes`-way logistic regression with L2 penalty `l2`.
    pub fn fit(
        xs: &[Vec<f32>],
        ys: &[usize],
        classes: usize,
        steps: usize,
        lr: f32,
        l2: f32,
    ) -> Self {
        let d = xs.first().map_or(0, Vec::len);
        let n = xs.len().max(1) as f32;
        let mut mean = vec![0.0f32; d];
        for x in xs {
            for (m, v) in mean.iter_mut().zip(x) {
                *m += v / n;
            }
        }
        let mut std = vec![0.0f32; d];
        for x in xs {
            for ((s, v), m) in std.iter_mut().zip(x).zip(&mean) {
                *s += (v - m) * (v - m) / n;
            }
        }
        let std: Vec<f32> = std.into_iter().map(|v| v.sqrt().max(1e-6)).collect();
        let mut probe = LinearProbe {
            mean,
            std,
            weights: vec![0.0; classes * d],
            bias: vec![0.0; classes],
            classes,
        };
        let zs: Vec<Vec<f32>> = xs.iter().map(|x| probe.standardise(x)).collect();
        for _ in 0..steps {
            let mut gw = vec![0.0f32; classes * d];
            let mut gb = vec![0.0f32; classes];
            for (z, &y) in zs.iter().zip(ys) {
                let p = probe.probabilities(z);
                for c in 0..classes {
                    let g = (p[c] - f32::from(u8::from(c == y))) / n;
                    gb[c] += g;
                    for (w, v) in gw[c * d..(c + 1) * d].iter_mut().zip(z) {
                        *w += g * v;
                    }
                }
            }
            for (w, g) in probe.weights.iter_mut().zip(&gw) {
                *w -= lr * (g + l2 * *w);
            }
            for (b, g) in probe.bias.iter_mut().zip(&gb) {
                *b -= lr * g;
            }
        }
        probe
    }

    fn standardise(&self, x: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(&self.mean)
            .zip(&self.std)
            .map(|((v, m), s)| (v - m) / s)
            .collect()
    }

    fn probabilities(&self, z: &[f32]) -> Vec<f32> {
        let d = z.len();
        let logits: Vec<f32> = (0..self.classes)
            .map(|c| {
                self.bias[c]
                    + self.weights[c * d..(c + 1) * d]
                        .iter()
                        .zip(z)
                        .map(|(w, v)| w * v)
                        .sum::<f32>()
            })
            .collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let s: f32 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    }

    /// The most likely class.
    pub fn predict(&self, x: &[f32]) -> usize {
        let p = self.probabilities(&self.standardise(x));
        (0..self.classes)
            .max_by(|&a, &b| p[a].total_cmp(&p[b]))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_classes_are_learned() {
        // Three blobs in 2-D.
        let centres = [(0.0f32, 3.0f32), (3.0, 0.0), (-3.0, -3.0)];
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..90 {
            let c = i % 3;
            let j = (i as f32 * 0.7).sin();
            xs.push(vec![centres[c].0 + j, centres[c].1 - j]);
            ys.push(c);
        }
        let probe = LinearProbe::fit(&xs, &ys, 3, 300, 0.5, 0.0);
        let right = xs
            .iter()
            .zip(&ys)
            .filter(|(x, y)| probe.predict(x) == **y)
            .count();
        assert_eq!(right, 90);
        assert_eq!(
            probe_input(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2),
            vec![1.0, 2.0, 4.0, 5.0]
        );
    }
}
