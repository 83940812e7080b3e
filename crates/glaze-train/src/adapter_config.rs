//! One loader for every trained adapter: the adapter's configuration (burn's `XConfig`) is
//! stored in its checkpoint; loading reads it, checks the checkpoint's identity against the
//! encoder and backbone at hand, builds the module (`X`) and imports its weights.

use std::path::Path;

use burn::prelude::*;
use glaze_core::{EncoderSpec, FrozenBackbone, import_params};

use crate::checkpoint::{AdapterIdentity, BackboneIdentity, Checkpoint};

/// The serialisable configuration of a trainable adapter.
pub trait AdapterConfig: serde::Serialize + serde::de::DeserializeOwned {
    /// The module it builds.
    type Adapter: Module;
    /// The plugin's error type.
    type Error: From<glaze_core::Error>;

    /// The kind recorded in checkpoints, e.g. `vision/mlp`.
    fn kind(&self) -> String;

    /// How many of the backbone's blocks the adapter is trained through (default: all).
    fn layers_used(&self, backbone: &dyn FrozenBackbone) -> usize {
        backbone.spec().n_layers
    }

    /// Checks the configuration against the encoder and backbone and builds the untrained
    /// adapter on `device`.
    fn build(
        &self,
        encoder: Option<&EncoderSpec>,
        backbone: &dyn FrozenBackbone,
        device: &Device,
    ) -> Result<Self::Adapter, Self::Error>;

    /// Today's name of a parameter that a checkpoint stores as `stored`: an adapter whose
    /// module layout changed maps the names its older checkpoints hold (default: unchanged).
    fn param_name(&self, stored: &str) -> String {
        stored.to_string()
    }
}

/// The identity an adapter with `config`, trained against `encoder` and `backbone`, records in
/// its checkpoints.
pub fn adapter_identity<C: AdapterConfig>(
    config: &C,
    encoder: Option<&EncoderSpec>,
    backbone: &dyn FrozenBackbone,
) -> glaze_core::Result<AdapterIdentity> {
    Ok(AdapterIdentity {
        kind: config.kind(),
        config: serde_json::to_value(config).map_err(|e| glaze_core::Error::InvalidConfig {
            field: "adapter",
            problem: e.to_string(),
        })?,
        encoder: encoder.cloned(),
        backbone: BackboneIdentity::of(backbone.spec(), config.layers_used(backbone)),
    })
}

/// Loads the adapter saved at `path`: its configuration from the checkpoint (an unreadable one
/// names `what` the file should hold), the identity checked against `encoder` and `backbone`
/// ([`glaze_core::Error::IdentityMismatch`] otherwise), the module built on the backbone's
/// device and its weights imported.
pub fn load_adapter<C: AdapterConfig>(
    path: &Path,
    what: &str,
    encoder: Option<&EncoderSpec>,
    backbone: &dyn FrozenBackbone,
) -> Result<(C::Adapter, C), C::Error> {
    let (ck, config): (_, C) = Checkpoint::load_config(path, what)?;
    ck.identity
        .check_compatible(&adapter_identity(&config, encoder, backbone)?, path)?;
    let model = config.build(encoder, backbone, backbone.device())?;
    let weights = ck
        .weight_map()
        .into_values()
        .map(|mut t| {
            t.name = config.param_name(&t.name);
            (t.name.clone(), t)
        })
        .collect();
    Ok((import_params(model, &weights, path)?, config))
}
