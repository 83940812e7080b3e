//! The four vision adapters behind the core [`Adapter`] interface, chosen by a serde enum.

use burn::prelude::*;
use glaze_core::{Adapter, Condition, Features};

use crate::error::{Error, Result};
use crate::linear::LinearProjector;
use crate::mlp::MlpProjector;
use crate::perceiver::{Perceiver, PerceiverConfig};
use crate::pool::pooled_count;
use glaze_core::layers::qformer::{QFormer, QFormerConfig};

/// Which adapter, with its size. The token count per image follows from it: all (pooled) patches
/// for the projectors, `queries`/`latents` for the Q-Former and the resampler.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VisionAdapterConfig {
    /// MiniGPT-4: one linear layer per (pooled) patch.
    Linear {
        /// Average-pool the patch grid by this factor first (1 = none).
        pool: usize,
    },
    /// LLaVA-1.5: Linear-GELU-Linear per (pooled) patch.
    Mlp {
        /// Average-pool the patch grid by this factor first (1 = none).
        pool: usize,
    },
    /// BLIP-2 / InstructBLIP Q-Former.
    #[serde(rename = "qformer")]
    QFormer {
        /// Learned queries (soft tokens per image).
        queries: usize,
        /// Inner width.
        width: usize,
        /// Blocks.
        layers: usize,
        /// Heads.
        heads: usize,
        /// Condition on the instruction text.
        instruction: bool,
    },
    /// Flamingo Perceiver resampler.
    Perceiver {
        /// Learned latents (soft tokens per image).
        latents: usize,
        /// Inner width.
        width: usize,
        /// Blocks.
        layers: usize,
        /// Heads.
        heads: usize,
    },
}

impl VisionAdapterConfig {
    /// Short name: `linear`, `mlp`, `qformer`, `qformer-instruct`, `perceiver`.
    pub fn name(&self) -> &'static str {
        match self {
            VisionAdapterConfig::Linear { .. } => "linear",
            VisionAdapterConfig::Mlp { .. } => "mlp",
            VisionAdapterConfig::QFormer {
                instruction: true, ..
            } => "qformer-instruct",
            VisionAdapterConfig::QFormer { .. } => "qformer",
            VisionAdapterConfig::Perceiver { .. } => "perceiver",
        }
    }

    /// Default sizes for a kind name (the CLI's `--adapter`).
    pub fn preset(name: &str) -> Result<Self> {
        Ok(match name {
            "linear" => VisionAdapterConfig::Linear { pool: 2 },
            "mlp" => VisionAdapterConfig::Mlp { pool: 2 },
            "qformer" | "qformer-instruct" => VisionAdapterConfig::QFormer {
                queries: 32,
                width: 256,
                layers: 2,
                heads: 4,
                instruction: name == "qformer-instruct",
            },
            "perceiver" => VisionAdapterConfig::Perceiver {
                latents: 32,
                width: 256,
                layers: 2,
                heads: 4,
            },
            other => {
                return Err(Error::config(
                    "adapter",
                    format!("`{other}` is not linear, mlp, qformer, qformer-instruct or perceiver"),
                ));
            }
        })
    }

    /// [`VisionAdapterConfig::preset`] with its size overridden: `pool` for the projectors,
    /// `queries` (queries or latents) for the Q-Former and the resampler.
    pub fn preset_sized(name: &str, pool: Option<usize>, queries: Option<usize>) -> Result<Self> {
        let mut cfg = Self::preset(name)?;
        match &mut cfg {
            VisionAdapterConfig::Linear { pool: p } | VisionAdapterConfig::Mlp { pool: p } => {
                *p = pool.unwrap_or(*p);
            }
            VisionAdapterConfig::QFormer { queries: q, .. }
            | VisionAdapterConfig::Perceiver { latents: q, .. } => {
                *q = queries.unwrap_or(*q);
            }
        }
        Ok(cfg)
    }

    /// Soft tokens for `n_features` feature vectors.
    pub fn num_tokens(&self, n_features: usize) -> usize {
        match self {
            VisionAdapterConfig::Linear { pool } | VisionAdapterConfig::Mlp { pool } => {
                pooled_count(n_features, *pool)
            }
            VisionAdapterConfig::QFormer { queries, .. } => *queries,
            VisionAdapterConfig::Perceiver { latents, .. } => *latents,
        }
    }

    /// Checks the sizes and builds the adapter from features of width `d_feature` to `d_model`.
    pub fn init(&self, d_feature: usize, d_model: usize, device: &Device) -> Result<VisionAdapter> {
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(Error::config(field, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        let heads_divide = |width: usize, heads: usize| {
            positive("heads", heads)?;
            if !width.is_multiple_of(heads) {
                return Err(Error::config(
                    "heads",
                    format!("{heads} heads do not divide the width {width}"),
                ));
            }
            Ok(())
        };
        Ok(match *self {
            VisionAdapterConfig::Linear { pool } => {
                positive("pool", pool)?;
                VisionAdapter::Linear(LinearProjector::init(d_feature, d_model, pool, device))
            }
            VisionAdapterConfig::Mlp { pool } => {
                positive("pool", pool)?;
                VisionAdapter::Mlp(MlpProjector::init(d_feature, d_model, pool, device))
            }
            VisionAdapterConfig::QFormer {
                queries,
                width,
                layers,
                heads,
                instruction,
            } => {
                positive("queries", queries)?;
                heads_divide(width, heads)?;
                VisionAdapter::QFormer(
                    QFormerConfig::new(d_feature, d_model)
                        .with_num_queries(queries)
                        .with_width(width)
                        .with_layers(layers)
                        .with_heads(heads)
                        .with_instruction(instruction)
                        .init(device),
                )
            }
            VisionAdapterConfig::Perceiver {
                latents,
                width,
                layers,
                heads,
            } => {
                positive("latents", latents)?;
                heads_divide(width, heads)?;
                VisionAdapter::Perceiver(
                    PerceiverConfig::new(d_feature, d_model)
                        .with_num_latents(latents)
                        .with_width(width)
                        .with_layers(layers)
                        .with_heads(heads)
                        .init(device),
                )
            }
        })
    }
}

/// A trainable map from image features to soft tokens.
#[derive(Module, Debug)]
pub enum VisionAdapter {
    /// MiniGPT-4 linear projector.
    Linear(LinearProjector),
    /// LLaVA-1.5 MLP projector.
    Mlp(MlpProjector),
    /// BLIP-2 Q-Former.
    QFormer(QFormer),
    /// Flamingo Perceiver resampler.
    Perceiver(Perceiver),
}

impl VisionAdapter {
    /// Width of the soft tokens.
    pub fn d_model(&self) -> usize {
        match self {
            VisionAdapter::Linear(l) => l.proj.weight.dims()[1],
            VisionAdapter::Mlp(m) => m.mlp.fc2.weight.dims()[1],
            VisionAdapter::QFormer(q) => q.out.weight.dims()[1],
            VisionAdapter::Perceiver(p) => p.out.weight.dims()[1],
        }
    }
}

impl Adapter for VisionAdapter {
    fn output_width(&self) -> usize {
        self.d_model()
    }

    fn num_tokens(&self, n_features: usize) -> usize {
        match self {
            VisionAdapter::Linear(l) => pooled_count(n_features, l.pool),
            VisionAdapter::Mlp(m) => pooled_count(n_features, m.pool),
            VisionAdapter::QFormer(q) => q.num_queries(),
            VisionAdapter::Perceiver(p) => p.num_latents(),
        }
    }

    fn adapt(&self, features: &Features, condition: Option<&Condition>) -> Tensor<3> {
        let x = features.tokens.clone();
        match self {
            VisionAdapter::Linear(l) => l.forward(x),
            VisionAdapter::Mlp(m) => m.forward(x),
            VisionAdapter::QFormer(q) => q.forward(x, features.mask.clone(), condition),
            VisionAdapter::Perceiver(p) => p.forward(x, features.mask.clone()),
        }
    }
}

impl glaze_train::AdapterConfig for VisionAdapterConfig {
    type Adapter = VisionAdapter;
    type Error = Error;

    fn kind(&self) -> String {
        format!("vision/{}", self.name())
    }

    fn build(
        &self,
        encoder: Option<&glaze_core::EncoderSpec>,
        backbone: &dyn glaze_core::FrozenBackbone,
        device: &Device,
    ) -> Result<VisionAdapter> {
        let encoder = encoder
            .ok_or_else(|| Error::config("encoder", "a vision adapter needs its encoder"))?;
        self.init(encoder.feature_dim, backbone.spec().d_model, device)
    }
}
