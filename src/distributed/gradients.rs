//! Moving a model's gradients and weights between ranks: gradients
//! flattened in the model's parameter order and summed in one all-reduce,
//! weights broadcast from rank 0.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use super::collective::{Collective, agree, broadcast_f32, check_same};
use crate::error::{Error, Result};
use crate::io::to_host;

/// Sums every rank's gradients, and `extra` values beside them, in one
/// all-reduce; every rank gets the same sums back.
///
/// Gradients are flattened in the model's parameter order (the order
/// [`Module::visit`] gives, the same on every rank); a parameter without a
/// gradient on a rank counts as zeros there, and has a gradient afterwards
/// if any rank had one. One process returns `grads` untouched.
///
/// # Errors
///
/// [`Error::ReadBack`] when a gradient cannot be read back from its
/// device; [`Error::Distributed`] when the transport fails.
pub fn all_reduce_gradients<M: Module>(
    c: &dyn Collective,
    model: &M,
    mut grads: GradientsParams,
    extra: &mut [f32],
) -> Result<GradientsParams> {
    if c.size() == 1 {
        return Ok(grads);
    }
    struct Take<'a> {
        grads: &'a mut GradientsParams,
        values: Vec<f32>,
        found: Vec<f32>,
        error: Option<Error>,
    }
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.shape().num_elements();
            match self.grads.remove::<D>(param.id).map(to_host) {
                Some(Ok(g)) => {
                    self.values.extend_from_slice(&g.values);
                    self.found.push(1.0);
                }
                Some(Err(e)) => {
                    self.error.get_or_insert(e);
                    self.values.extend(std::iter::repeat_n(0.0, n));
                    self.found.push(0.0);
                }
                None => {
                    self.values.extend(std::iter::repeat_n(0.0, n));
                    self.found.push(0.0);
                }
            }
        }
    }
    // Kept between steps: a gradient-sized buffer allocated afresh costs
    // its page faults every step.
    let kept = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut take = Take {
        grads: &mut grads,
        values: kept,
        found: Vec::new(),
        error: None,
    };
    take.values.clear();
    model.visit(&mut take);
    let Take {
        mut values,
        found,
        error,
        ..
    } = take;
    // Agreed before the all-reduce: a rank that could not read its
    // gradients must not leave the others waiting in it.
    agree(c, "reading the gradients", error.map_or(Ok(()), Err))?;
    let (n_values, n_found) = (values.len(), found.len());
    values.extend(found);
    values.extend_from_slice(extra);
    c.all_reduce_sum(&mut values)?;
    extra.copy_from_slice(&values[n_values + n_found..]);

    struct Give<'a> {
        grads: GradientsParams,
        values: &'a [f32],
        found: &'a [f32],
        at: usize,
        index: usize,
    }
    impl ModuleVisitor for Give<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let shape = param.shape();
            let n = shape.num_elements();
            if self.found.get(self.index).is_some_and(|&f| f > 0.0) {
                let device = param.val().device().inner();
                let data = TensorData::new(self.values[self.at..self.at + n].to_vec(), shape);
                self.grads
                    .register::<D>(param.id, Tensor::from_data(data, &device));
            }
            self.at += n;
            self.index += 1;
        }
    }
    let mut give = Give {
        grads: GradientsParams::new(),
        values: &values[..n_values],
        found: &values[n_values..n_values + n_found],
        at: 0,
        index: 0,
    };
    model.visit(&mut give);
    let grads = give.grads;
    SCRATCH.with(|s| *s.borrow_mut() = values);
    Ok(grads)
}

thread_local! {
    /// The flattened gradients of the last all-reduce, for the next one.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The model with rank 0's weights on every rank (at a run's start and on
/// resume, so that every replica begins identical). One process returns
/// `model` untouched.
///
/// # Errors
///
/// [`Error::ReadBack`] when a weight cannot be read back from its device;
/// [`Error::Distributed`] when the ranks' models differ in size, or the
/// transport fails.
pub fn broadcast_weights<M: Module>(c: &dyn Collective, model: M) -> Result<M> {
    if c.size() == 1 {
        return Ok(model);
    }
    struct Take {
        values: Vec<f32>,
        error: Option<Error>,
    }
    impl ModuleVisitor for Take {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            match to_host(param.val().inner()) {
                Ok(h) => self.values.extend_from_slice(&h.values),
                Err(e) => {
                    self.error.get_or_insert(e);
                    self.values
                        .extend(std::iter::repeat_n(0.0, param.shape().num_elements()));
                }
            }
        }
    }
    let mut take = Take {
        values: Vec::new(),
        error: None,
    };
    model.visit(&mut take);
    agree(c, "reading the weights", take.error.map_or(Ok(()), Err))?;
    let mut values = take.values;
    let count = (values.len() as u64).to_le_bytes();
    check_same(c, "the number of weights", &count)?;
    broadcast_f32(c, &mut values)?;

    struct Put<'a> {
        values: &'a [f32],
        at: usize,
    }
    impl ModuleMapper for Put<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let n = param.shape().num_elements();
            let at = self.at;
            self.at += n;
            let values = &self.values[at..at + n];
            param.map(|old| {
                let (autodiff, require_grad) = (old.is_autodiff(), old.is_require_grad());
                let device = old.device().inner();
                let data = TensorData::new(values.to_vec(), old.shape());
                let new = Tensor::<D>::from_data(data, &device);
                let new = if autodiff { new.autodiff() } else { new };
                if require_grad {
                    new.require_grad()
                } else {
                    new
                }
            })
        }
    }
    Ok(model.map(&mut Put {
        values: &values,
        at: 0,
    }))
}
