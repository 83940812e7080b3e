//! All cross-crate tests, in one binary.

mod real_model;
