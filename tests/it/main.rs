//! All cross-crate tests, in one binary (one link, shared model load).

mod bad_input;
mod contract;
mod real_model;
mod tokenizer;
