//! Named access to a module's trainable parameters as host data: what checkpoints store and
//! what the optimizer updates.
//!
//! A parameter's name is its field path in the module tree (`proj.weight`,
//! `layers.0.bias`), the same name in every run, so checkpoints and optimizer state do not
//! depend on burn's random parameter ids.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::error::{Error, Result};
use glaze_kernels::product_grad::ProductGrad;

/// A named tensor on the host (`f32`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Field path.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("invariant: float tensor data converts to f32")
}

#[derive(Default)]
struct Path_ {
    stack: Vec<String>,
}

impl Path_ {
    fn name(&self) -> String {
        self.stack.join(".")
    }
}

/// Walks a module's float parameters with their field paths: `each(id, name, values, shape,
/// gradient)`, values and gradient flattened (the gradient from `grads`, when given and held).
struct Walk<'g, F: FnMut(ParamId, String, Tensor<1>, Vec<usize>, Option<Tensor<1>>)> {
    path: Path_,
    grads: Option<&'g mut GradientsParams>,
    each: F,
}

impl<F: FnMut(ParamId, String, Tensor<1>, Vec<usize>, Option<Tensor<1>>)> ModuleVisitor
    for Walk<'_, F>
{
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let n: usize = shape.iter().product();
        let id: ParamId = param.id;
        // Taken out (not cloned): the only reference to its buffer, which `host` then
        // reads without a copy (a 20 MB copy per step for the prototype weights).
        let grad = self
            .grads
            .as_deref_mut()
            .and_then(|g| g.remove::<D>(id))
            .map(|g| g.reshape([n]));
        (self.each)(id, self.path.name(), t.reshape([n]), shape, grad);
    }
}

fn walk<M: Module>(
    module: &M,
    grads: Option<&mut GradientsParams>,
    each: impl FnMut(ParamId, String, Tensor<1>, Vec<usize>, Option<Tensor<1>>),
) {
    module.visit(&mut Walk {
        path: Path_::default(),
        grads,
        each,
    });
}

/// Every float parameter of `module`, by name, in visiting order.
pub fn export_params<M: Module>(module: &M) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    walk(module, None, |_, name, t, shape, _| {
        out.push(NamedTensor {
            name,
            shape,
            data: host(t),
        })
    });
    out
}

struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Draws every lazily initialised float parameter of `module` now (burn draws them at their
/// first use otherwise, from whatever state the process-wide generator has by then).
pub fn materialize<M: Module>(module: &M) {
    module.visit(&mut Materialize);
}

/// Number of float parameters (scalars) in `module`.
pub fn count_params<M: Module>(module: &M) -> usize {
    export_params(module).iter().map(|t| t.data.len()).sum()
}

struct Importer<'a> {
    path: Path_,
    values: &'a BTreeMap<String, NamedTensor>,
    used: usize,
    problem: Option<String>,
}

impl ModuleMapper for Importer<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.name();
        let Some(v) = self.values.get(&name) else {
            self.problem
                .get_or_insert_with(|| format!("tensor `{name}` is missing"));
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.dims().to_vec();
        if shape != v.shape {
            self.problem.get_or_insert_with(|| {
                format!(
                    "tensor `{name}` has shape {:?} in the file but {:?} in the model",
                    v.shape, shape
                )
            });
            return Param::from_mapped_value(id, tensor, mapper);
        }
        self.used += 1;
        let like = (tensor.dims(), tensor.is_require_grad(), tensor.device());
        let t = replace_values(like, v.data.clone());
        Param::from_mapped_value(id, t, mapper)
    }
}

/// A tensor of `shape` on `device`, tracked when `require_grad`, holding `values`.
fn replace_values<const D: usize>(
    (shape, require_grad, device): ([usize; D], bool, Device),
    values: Vec<f32>,
) -> Tensor<D> {
    let inner_device = device.clone().without_autodiff();
    let data = TensorData::new(values, shape);
    if device.is_autodiff() {
        let inner = Tensor::<D>::from_data(data, &inner_device);
        let t = Tensor::from_inner(inner);
        if require_grad { t.require_grad() } else { t }
    } else {
        let t = Tensor::<D>::from_data(data, &device);
        if require_grad { t.require_grad() } else { t }
    }
}

/// Loads named values into `module` (same names and shapes as [`export_params`] gives).
/// A missing, extra or mis-shaped tensor is an [`Error::Checkpoint`] naming `file`.
pub fn import_params<M: Module>(
    module: M,
    values: &BTreeMap<String, NamedTensor>,
    file: &Path,
) -> Result<M> {
    let mut m = Importer {
        path: Path_::default(),
        values,
        used: 0,
        problem: None,
    };
    let module = module.map(&mut m);
    if let Some(problem) = m.problem {
        return Err(Error::Checkpoint {
            path: file.to_path_buf(),
            problem,
        });
    }
    if m.used != values.len() {
        let known: Vec<String> = export_params(&module).into_iter().map(|t| t.name).collect();
        let extra = values
            .keys()
            .find(|k| !known.contains(k))
            .cloned()
            .unwrap_or_default();
        return Err(Error::Checkpoint {
            path: file.to_path_buf(),
            problem: format!("tensor `{extra}` in the file is not a parameter of the adapter"),
        });
    }
    Ok(module)
}

/// Gradients of the trainable parameters, by name, on the host.
#[derive(Debug, Clone, Default)]
pub struct HostGrads {
    /// Name → gradient values (same layout as the parameter).
    pub grads: BTreeMap<String, Vec<f32>>,
    /// Name → gradient kept as a product ([`glaze_kernels::product_grad`]), formed only by the
    /// optimizer's update.
    pub products: BTreeMap<String, ProductGrad>,
}

impl HostGrads {
    /// The gradients `grads` holds for the parameters of `module`, and the deferred ones in
    /// `products` (by parameter id).
    pub fn collect<M: Module>(
        module: &M,
        mut grads: GradientsParams,
        products: Vec<(ParamId, ProductGrad)>,
    ) -> Self {
        let mut out = HostGrads::default();
        let mut by_id: BTreeMap<ParamId, Vec<ProductGrad>> = BTreeMap::new();
        for (id, p) in products {
            by_id.entry(id).or_default().push(p);
        }
        walk(module, Some(&mut grads), |id, name, _, _, grad| {
            match (by_id.remove(&id), grad) {
                // Products with the same matrix only: their factors add up, still a product.
                (Some(mut ps), None) if ps.iter().all(|p| p.same_matrix(&ps[0])) => {
                    let mut sum = ps.swap_remove(0);
                    ps.iter().for_each(|p| sum.add(p));
                    out.products.insert(name, sum);
                }
                // Also used elsewhere, or with different matrices: every part formed, summed.
                (Some(ps), grad) => {
                    let mut dense = grad.map(host).unwrap_or_else(|| vec![0.0; ps[0].len()]);
                    for p in &ps {
                        dense.iter_mut().zip(p.dense()).for_each(|(x, y)| *x += y);
                    }
                    out.grads.insert(name, dense);
                }
                (None, Some(g)) => {
                    out.grads.insert(name, host(g));
                }
                (None, None) => {}
            }
        });
        out
    }

    /// Adds `other` (gradient accumulation).
    pub fn add(&mut self, other: HostGrads) {
        for (k, g) in other.grads {
            match self.grads.get_mut(&k) {
                Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, b)| *a += b),
                None => {
                    self.grads.insert(k, g);
                }
            }
        }
        for (k, p) in other.products {
            match self.products.get_mut(&k) {
                Some(acc) => acc.add(&p),
                None => {
                    self.products.insert(k, p);
                }
            }
        }
    }

    /// Global L2 norm over all gradients (in f64: fixed chunks, their sums added in order;
    /// a product's square from its Gram matrix, [`ProductGrad::sq_norm`]).
    pub fn norm(&self) -> f64 {
        use rayon::prelude::*;
        // Fixed chunks summed in parallel, then in order: the same value for any thread count.
        // Within a chunk, eight interleaved partial sums (one f64 vector): a single running sum
        // was a chain of dependent additions, 5.5 ms for the 4.9 M prototype weights.
        fn squares(c: &[f32]) -> f64 {
            let mut acc = [0f64; 8];
            let mut blocks = c.chunks_exact(8);
            for b in &mut blocks {
                for (a, &v) in acc.iter_mut().zip(b) {
                    *a += (v as f64) * (v as f64);
                }
            }
            for (a, &v) in acc.iter_mut().zip(blocks.remainder()) {
                *a += (v as f64) * (v as f64);
            }
            acc.iter().sum()
        }
        let products: f64 = self.products.values().map(ProductGrad::sq_norm).sum();
        (self
            .grads
            .values()
            .flat_map(|g| g.par_chunks(1 << 16).map(squares).collect::<Vec<f64>>())
            .sum::<f64>()
            + products)
            .sqrt()
    }

    /// Multiplies every gradient by `s`.
    pub fn scale(&mut self, s: f32) {
        if s == 1.0 {
            return;
        }
        use rayon::prelude::*;
        for g in self.grads.values_mut() {
            g.par_iter_mut().for_each(|v| *v *= s);
        }
        for p in self.products.values_mut() {
            p.scale(s);
        }
    }

    /// True when no parameter received a gradient.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty() && self.products.is_empty()
    }
}

/// A mapper that replaces each named parameter for which `update` returns new values;
/// `update` gets the name and a reader of the current values (called only when needed, at
/// most once; an update that reads must return the new values).
struct Updater<'a, F: FnMut(&str, &mut dyn FnMut() -> Vec<f32>) -> Option<Vec<f32>>> {
    path: Path_,
    update: &'a mut F,
}

impl<F: FnMut(&str, &mut dyn FnMut() -> Vec<f32>) -> Option<Vec<f32>>> ModuleMapper
    for Updater<'_, F>
{
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.name();
        let (id, tensor, mapper) = param.consume();
        let n: usize = tensor.dims().iter().product();
        // What the new tensor keeps of this one (the values themselves are moved out by
        // `read`: no copy when the module held the only reference).
        let like = (tensor.dims(), tensor.is_require_grad(), tensor.device());
        let mut slot = Some(tensor);
        let new = {
            let mut read = || {
                let t = slot
                    .take()
                    .expect("invariant: `read` is called at most once");
                host(t.reshape([n]))
            };
            (self.update)(&name, &mut read)
        };
        let t = match (new, slot) {
            (Some(new), _) => replace_values(like, new),
            (None, Some(t)) => t,
            (None, None) => unreachable!("invariant: an update that reads a parameter returns it"),
        };
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Applies `update(name, read_current) -> Some(new)` to every float parameter of `module`
/// (`read_current` moves the values out: an update that calls it must return `Some`).
pub fn update_params<M: Module>(
    module: M,
    mut update: impl FnMut(&str, &mut dyn FnMut() -> Vec<f32>) -> Option<Vec<f32>>,
) -> M {
    let mut u = Updater {
        path: Path_::default(),
        update: &mut update,
    };
    module.map(&mut u)
}
