//! Soft-prompt (prompt) tuning: `N` trainable vectors prepended to the prompt of a frozen LLM
//! (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"; PEFT's
//! `PromptTuningConfig`). It is the adapter that needs no encoder.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::adapter::{Adapter, Condition, Features};
use crate::soft::SoftTokens;

/// Configuration of a [`SoftPrompt`].
#[derive(Config, Debug)]
pub struct SoftPromptConfig {
    /// Number of trainable vectors `N`.
    pub n_tokens: usize,
    /// Width `D` of the backbone's embeddings.
    pub d_model: usize,
    /// Standard deviation of the random initialisation. Default: 0.02.
    #[config(default = 0.02)]
    pub init_std: f64,
}

impl SoftPromptConfig {
    /// Random initialisation `N(0, init_std²)`.
    pub fn init(&self, device: &Device) -> SoftPrompt {
        let t = Tensor::random(
            [self.n_tokens, self.d_model],
            Distribution::Normal(0.0, self.init_std),
            device,
        );
        SoftPrompt {
            embeddings: Param::from_tensor(t),
        }
    }

    /// Initialisation from existing embeddings `[N, D]` (e.g. the embeddings of a text, as
    /// Lester et al. recommend); the values are copied onto `device`.
    pub fn init_from(&self, embeddings: Tensor<2>, device: &Device) -> SoftPrompt {
        let data = embeddings.into_data();
        SoftPrompt {
            embeddings: Param::from_tensor(Tensor::from_data(data, device)),
        }
    }
}

/// `N` trainable vectors in the backbone's embedding space.
#[derive(Module, Debug)]
pub struct SoftPrompt {
    /// The vectors `[N, D]`.
    pub embeddings: Param<Tensor<2>>,
}

impl SoftPrompt {
    /// The vectors as soft tokens.
    pub fn tokens(&self) -> SoftTokens {
        SoftTokens::new(self.embeddings.val())
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.embeddings.val().dims()[0]
    }

    /// True when there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Adapter for SoftPrompt {
    fn output_width(&self) -> usize {
        self.embeddings.val().dims()[1]
    }

    fn num_tokens(&self, _n_features: usize) -> usize {
        self.len()
    }

    /// The same vectors for every example; the features only give the batch size.
    fn adapt(&self, features: &Features, _condition: Option<&Condition>) -> Tensor<3> {
        let [n, d] = self.embeddings.val().dims();
        self.embeddings
            .val()
            .reshape([1, n, d])
            .repeat_dim(0, features.batch())
    }
}
