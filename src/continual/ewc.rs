//! EWC: elastic weight consolidation, the classic regularisation baseline.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::objective::ContinualModel;
use super::plugin::{DomainEnd, Plugin};
use crate::data::sampling::stream::FISHER;
use crate::error::{Error, Result};
use crate::io::{self, HostTensor, to_host};
use crate::params;

/// One anchor per finished domain: the diagonal Fisher `F` and the
/// parameters `theta*` after that domain, flattened, on the gradient device.
#[derive(Debug, Clone)]
struct Anchor {
    fisher: HashMap<ParamId, Tensor<1>>,
    theta: HashMap<ParamId, Tensor<1>>,
}

/// Elastic weight consolidation (Kirkpatrick et al., 2017) with one anchor
/// per finished domain: the penalty `lambda * sum_d sum_j F_dj (theta_j - theta*_dj)^2`,
/// whose gradient is `2 * lambda * F_d * (theta - theta*_d)`.
///
/// The Fisher is the empirical diagonal: the mean over batches of each
/// parameter's squared batch gradient.
#[derive(Debug, Clone, Default)]
pub struct Ewc {
    anchors: Vec<Anchor>,
}

/// Sums of squared gradients over batches, per parameter.
#[derive(Debug, Default)]
pub struct FisherAccumulator {
    sums: HashMap<ParamId, Tensor<1>>,
    batches: usize,
}

impl FisherAccumulator {
    /// Adds one batch's gradients (of the parameters of `model`).
    pub fn add<M: Module>(&mut self, model: &M, grads: &GradientsParams) {
        struct Add<'a> {
            grads: &'a GradientsParams,
            sums: &'a mut HashMap<ParamId, Tensor<1>>,
        }
        impl ModuleVisitor for Add<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.grads.get::<D>(param.id) {
                    let sq = g.flatten::<1>(0, D - 1).powi_scalar(2);
                    let sum = match self.sums.remove(&param.id) {
                        Some(s) => s + sq,
                        None => sq,
                    };
                    self.sums.insert(param.id, sum);
                }
            }
        }
        model.visit(&mut Add {
            grads,
            sums: &mut self.sums,
        });
        self.batches += 1;
    }

    /// Batches added so far.
    pub fn batches(&self) -> usize {
        self.batches
    }
}

impl Ewc {
    /// No anchor: a zero penalty.
    pub fn new() -> Ewc {
        Ewc::default()
    }

    /// Anchors the current parameters of `model` with the Fisher of `acc`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an accumulator of no batch.
    pub fn anchor<M: Module>(&mut self, model: &M, acc: FisherAccumulator) -> Result<()> {
        if acc.batches == 0 {
            return Err(Error::InvalidConfig(
                "EWC's Fisher needs at least one batch".into(),
            ));
        }
        let n = acc.batches as f32;
        let fisher: HashMap<ParamId, Tensor<1>> = acc
            .sums
            .into_iter()
            .map(|(id, s)| (id, s.div_scalar(n)))
            .collect();
        let theta = params::flat(model, |id| fisher.contains_key(id));
        self.anchors.push(Anchor { fisher, theta });
        Ok(())
    }

    /// The anchors as host tensors named `{anchor}.{fisher|theta}.{param id}`,
    /// for a checkpoint.
    pub fn to_host(&self) -> Result<BTreeMap<String, HostTensor>> {
        let mut out = BTreeMap::new();
        for (i, a) in self.anchors.iter().enumerate() {
            for (kind, map) in [("fisher", &a.fisher), ("theta", &a.theta)] {
                for (id, t) in map {
                    out.insert(format!("{i}.{kind}.{}", id.val()), to_host(t.clone())?);
                }
            }
        }
        Ok(out)
    }

    /// Anchors from [`to_host`](Self::to_host)'s tensors, on `device` (a
    /// gradient, non-autodiff device).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a name that does not parse or an anchor
    /// missing its Fisher or parameters.
    pub fn from_host(tensors: BTreeMap<String, HostTensor>, device: &Device) -> Result<Ewc> {
        let bad =
            |name: &str| Error::InvalidConfig(format!("EWC state: unexpected tensor {name:?}"));
        let mut anchors: Vec<Anchor> = Vec::new();
        for (name, t) in tensors {
            let mut parts = name.splitn(3, '.');
            let (Some(i), Some(kind), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(&name));
            };
            let i: usize = i.parse().map_err(|_| bad(&name))?;
            let id: u64 = id.parse().map_err(|_| bad(&name))?;
            if i > anchors.len() + 1024 {
                return Err(bad(&name));
            }
            while anchors.len() <= i {
                anchors.push(Anchor {
                    fisher: HashMap::new(),
                    theta: HashMap::new(),
                });
            }
            let n = t.values.len();
            let tensor = Tensor::<1>::from_data(TensorData::new(t.values, [n]), device);
            let map = match kind {
                "fisher" => &mut anchors[i].fisher,
                "theta" => &mut anchors[i].theta,
                _ => return Err(bad(&name)),
            };
            map.insert(ParamId::from(id), tensor);
        }
        if let Some(i) = anchors
            .iter()
            .position(|a| a.fisher.is_empty() || a.fisher.len() != a.theta.len())
        {
            return Err(Error::InvalidConfig(format!(
                "EWC state: anchor {i} is incomplete"
            )));
        }
        Ok(Ewc { anchors })
    }

    /// Finished domains anchored.
    pub fn anchors(&self) -> usize {
        self.anchors.len()
    }

    /// The penalty `lambda * sum F (theta - theta*)^2` over every anchor, as a
    /// tensor on the model's device (differentiable through the parameters),
    /// or `None` without anchors.
    ///
    /// # Shapes
    ///
    /// - output: `[1]`
    pub fn penalty<M: Module>(&self, model: &M, lambda: f64) -> Option<Tensor<1>> {
        struct Sum<'a> {
            anchors: &'a [Anchor],
            total: Option<Tensor<1>>,
        }
        impl ModuleVisitor for Sum<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                for a in self.anchors {
                    let (Some(f), Some(t)) = (a.fisher.get(&param.id), a.theta.get(&param.id))
                    else {
                        continue;
                    };
                    let theta = param.val().flatten::<1>(0, D - 1);
                    // F and theta* live on the gradient device; lift them
                    // (untracked) onto the parameter's.
                    let lift = |x: &Tensor<1>| {
                        if theta.is_autodiff() {
                            x.clone().autodiff()
                        } else {
                            x.clone()
                        }
                    };
                    let (f, t) = (lift(f), lift(t));
                    let term = (f * (theta - t).powi_scalar(2)).sum();
                    self.total = Some(match self.total.take() {
                        Some(s) => s + term,
                        None => term,
                    });
                }
            }
        }
        if self.anchors.is_empty() {
            return None;
        }
        let mut sum = Sum {
            anchors: &self.anchors,
            total: None,
        };
        model.visit(&mut sum);
        sum.total.map(|t| t.mul_scalar(lambda as f32))
    }
}

/// EWC as a plugin of the continual loop: after each domain, the Fisher over
/// [`importance_batches`](super::MethodConfig::importance_batches) batches of its
/// training data anchors the parameters; every step adds the penalty
/// `lambda * sum F (theta - theta*)^2`. Its anchors go into every checkpoint
/// as `ewc.safetensors`.
#[derive(Debug, Clone)]
pub struct EwcPlugin {
    lambda: f64,
    ewc: Ewc,
}

impl EwcPlugin {
    /// A plugin with penalty weight `lambda` and no anchor yet.
    pub fn new(lambda: f64) -> EwcPlugin {
        EwcPlugin {
            lambda,
            ewc: Ewc::new(),
        }
    }

    /// The anchors so far.
    pub fn ewc(&self) -> &Ewc {
        &self.ewc
    }
}

/// The checkpoint file of [`EwcPlugin`]'s anchors.
pub(crate) const EWC_FILE: &str = "ewc.safetensors";

impl<M: ContinualModel<B>, B> Plugin<M, B> for EwcPlugin {
    fn name(&self) -> &str {
        "ewc"
    }

    fn loss_term(&mut self, model: &M, _batch: &B) -> Result<Option<Tensor<1>>> {
        Ok(self.ewc.penalty(model, self.lambda))
    }

    fn after_domain(&mut self, model: &M, end: &DomainEnd<'_, B>) -> Result<()> {
        let mut acc = FisherAccumulator::default();
        for b in 0..end.config.importance_batches {
            let batch = end.batch(&[FISHER, end.index as u64], b)?;
            let loss = model.loss(&batch, None)?;
            let grads = GradientsParams::from_grads(loss.backward(), model);
            acc.add(model, &grads);
        }
        self.ewc.anchor(model, acc)
    }

    fn save(&self, dir: &Path) -> Result<bool> {
        if self.ewc.anchors() == 0 {
            return Ok(false);
        }
        io::TensorFile::from(self.ewc.to_host()?).save(&dir.join(EWC_FILE))?;
        Ok(true)
    }

    /// Reads the anchors of `ewc.safetensors`; none when the checkpoint
    /// has none (before the first domain ended).
    fn restore(&mut self, dir: &Path, device: &Device) -> Result<()> {
        let path = dir.join(EWC_FILE);
        if !path.is_file() {
            self.ewc = Ewc::new();
            return Ok(());
        }
        let file = io::TensorFile::load(&path)?;
        self.ewc = Ewc::from_host(file.tensors, device).map_err(|e| Error::CorruptFile {
            path,
            reason: e.to_string(),
        })?;
        Ok(())
    }
}
