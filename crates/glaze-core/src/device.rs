//! Choosing the compute device by name: `flex` (CPU, default), `wgpu[:cpu|:gpu]`, `cuda[:N]`.
//!
//! GPU backends are cargo features (`wgpu`, `cuda`) so default builds stay CPU-only and build
//! offline (burn's `cuda` feature downloads an LLVM bundle at build time).

use std::str::FromStr;

use burn::prelude::Device;

use crate::error::{Error, Result};

/// A device named on a command line or in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DeviceChoice {
    /// burn's pure-Rust `flex` CPU backend.
    #[default]
    Flex,
    /// wgpu on the best available adapter.
    Wgpu,
    /// wgpu on a CPU adapter (Mesa lavapipe): slow, for testing the GPU code path.
    WgpuCpu,
    /// CUDA device `N`.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "flex" | "cpu" => DeviceChoice::Flex,
            "wgpu" | "wgpu:gpu" => DeviceChoice::Wgpu,
            "wgpu:cpu" => DeviceChoice::WgpuCpu,
            "cuda" => DeviceChoice::Cuda(0),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(i)) => DeviceChoice::Cuda(i),
                _ => {
                    return Err(Error::InvalidConfig {
                        field: "device",
                        problem: format!(
                            "unknown device `{other}` (flex, wgpu, wgpu:cpu, cuda, cuda:N)"
                        ),
                    });
                }
            },
        })
    }
}

impl DeviceChoice {
    /// The burn device; an error when the backend was not compiled in.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Flex => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "wgpu")]
            DeviceChoice::WgpuCpu => Ok(Device::wgpu(burn::tensor::DeviceKind::Cpu)),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda(i) => Ok(Device::cuda(i)),
            #[allow(unreachable_patterns)]
            other => Err(Error::InvalidConfig {
                field: "device",
                problem: format!(
                    "{other:?} needs Glaze built with the `{}` feature",
                    if matches!(other, DeviceChoice::Cuda(_)) {
                        "cuda"
                    } else {
                        "wgpu"
                    }
                ),
            }),
        }
    }
}
