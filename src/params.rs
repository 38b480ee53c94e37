//! Params: a module's parameters by id, the keys that optimizer states,
//! masks, snapshots and checkpoints share.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Tensor};

/// Parameter ids of a module, in visiting order.
pub(crate) fn ids<M: Module>(model: &M) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// Parameter shapes of a module, in visiting order.
pub(crate) fn shapes<M: Module>(model: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.shape().dims::<D>().to_vec());
        }
    }
    let mut s = Shapes(Vec::new());
    model.visit(&mut s);
    s.0
}

/// `acc + weight · g`, parameter by parameter (gradient accumulation);
/// with no `acc` yet, `weight · g` (and `g` itself for weight 1).
pub(crate) fn add_scaled<M: Module>(
    model: &M,
    acc: Option<GradientsParams>,
    mut g: GradientsParams,
    weight: f32,
) -> GradientsParams {
    struct Add<'a> {
        acc: Option<GradientsParams>,
        g: &'a mut GradientsParams,
        out: GradientsParams,
        weight: f32,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let mine = self.g.remove::<D>(param.id).map(|g| match self.weight {
                1.0 => g,
                w => g.mul_scalar(w),
            });
            let before = self.acc.as_mut().and_then(|a| a.remove::<D>(param.id));
            let sum = match (before, mine) {
                (Some(a), Some(g)) => Some(a + g),
                (a, g) => a.or(g),
            };
            if let Some(sum) = sum {
                self.out.register::<D>(param.id, sum);
            }
        }
    }
    let mut add = Add {
        acc,
        g: &mut g,
        out: GradientsParams::new(),
        weight,
    };
    model.visit(&mut add);
    add.out
}

/// `model` with the parameter ids `ids` (same structure), so optimizer state
/// and masks keyed by id apply to it.
pub(crate) fn with_ids<M: Module>(model: M, ids: &[ParamId]) -> M {
    struct Give<'a> {
        ids: &'a [ParamId],
        next: usize,
    }
    impl ModuleMapper for Give<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let id = self.ids.get(self.next).copied().unwrap_or(param.id);
            self.next += 1;
            let (_, tensor, _) = param.consume();
            Param::initialized(id, tensor)
        }
    }
    model.map(&mut Give { ids, next: 0 })
}

/// The parameters of `model` that `keep` selects, flattened, on the gradient
/// (non-autodiff) device. No copy: tensors are shared until one is written.
pub(crate) fn flat<M: Module>(
    model: &M,
    keep: impl Fn(&ParamId) -> bool,
) -> HashMap<ParamId, Tensor<1>> {
    struct Take<F> {
        keep: F,
        out: HashMap<ParamId, Tensor<1>>,
    }
    impl<F: Fn(&ParamId) -> bool> ModuleVisitor for Take<F> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if (self.keep)(&param.id) {
                let flat = param.val().inner().flatten::<1>(0, D - 1);
                self.out.insert(param.id, flat);
            }
        }
    }
    let mut take = Take {
        keep,
        out: HashMap::new(),
    };
    model.visit(&mut take);
    take.out
}

/// What a state may hold for one parameter: its path in the model, shape and dtype.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamInfo {
    pub(crate) path: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
}

/// A model's float parameters by id: what an optimizer state must fit.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ParamTable {
    pub(crate) params: BTreeMap<u64, ParamInfo>,
}

impl ParamTable {
    /// The float parameters of `model`.
    pub(crate) fn of<M: Module>(model: &M) -> ParamTable {
        struct Collect {
            path: Vec<String>,
            table: ParamTable,
        }
        impl ModuleVisitor for Collect {
            fn enter_module(&mut self, name: &str, _container: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.table.params.insert(
                    param.id.val(),
                    ParamInfo {
                        path: self.path.join("."),
                        shape: param.shape().dims::<D>().to_vec(),
                        dtype: param.val().dtype(),
                    },
                );
            }
        }
        let mut c = Collect {
            path: Vec::new(),
            table: ParamTable::default(),
        };
        model.visit(&mut c);
        c.table
    }

    /// `path (id N)`, or `id N` for an id the model lacks.
    pub(crate) fn name(&self, id: u64) -> String {
        match self.params.get(&id) {
            Some(p) if !p.path.is_empty() => format!("{} (id {id})", p.path),
            _ => format!("id {id}"),
        }
    }
}
