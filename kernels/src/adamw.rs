//! AdamW whose step is one fused pass over parameter, gradient and moments.

use burn::config::Config;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};

use crate::FusedOps;

/// Configuration of [`FusedAdamW`]: AdamW with decoupled weight decay, as
/// burn's [`AdamW`] and PyTorch's `torch.optim.AdamW` (whose defaults these
/// are).
#[derive(Config, Debug)]
pub struct FusedAdamWConfig {
    /// Decay of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Decay of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Added to the second moment's square root.
    #[config(default = 1e-8)]
    pub epsilon: f32,
    /// Decoupled weight decay: each step multiplies the parameters by
    /// `1 - lr · weight_decay`.
    #[config(default = 0.01)]
    pub weight_decay: f32,
}

impl FusedAdamWConfig {
    /// Checks every hyper-parameter: `beta_1` and `beta_2` in `[0, 1)`,
    /// `epsilon` finite and positive, `weight_decay` finite and at least 0.
    ///
    /// # Errors
    ///
    /// [`InvalidHyperParameter`] naming the first one out of range.
    pub fn validate(&self) -> Result<(), InvalidHyperParameter> {
        let bad = |name, value: f32, expected| InvalidHyperParameter {
            name,
            value: f64::from(value),
            expected,
        };
        for (name, value) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..1.0).contains(&value) {
                return Err(bad(name, value, "a finite value in [0, 1)"));
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(bad("epsilon", self.epsilon, "a finite value above 0"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad(
                "weight_decay",
                self.weight_decay,
                "a finite value of 0 or more",
            ));
        }
        Ok(())
    }

    /// The optimizer for a whole module, once [`validate`](Self::validate)
    /// accepts the hyper-parameters.
    ///
    /// # Errors
    ///
    /// [`InvalidHyperParameter`] for a NaN, infinite or out-of-range
    /// hyper-parameter, which would otherwise turn the model's weights into NaN
    /// at the first step.
    ///
    /// # Example
    ///
    /// ```
    /// use softmask_kernels::FusedAdamWConfig;
    ///
    /// let optim = FusedAdamWConfig::new().with_weight_decay(0.0).init()?;
    /// let refused = FusedAdamWConfig::new().with_beta_1(f32::NAN).init();
    /// assert_eq!(refused.err().map(|e| e.name), Some("beta_1"));
    /// # Ok::<(), softmask_kernels::InvalidHyperParameter>(())
    /// ```
    pub fn init(&self) -> Result<ModuleOptimizer, InvalidHyperParameter> {
        self.validate()?;
        Ok(ModuleOptimizer::from(FusedAdamW {
            config: self.clone(),
            fallback: AdamWConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .with_weight_decay(self.weight_decay)
                .build(),
        }))
    }
}

/// An optimizer hyper-parameter that is NaN, infinite or out of its range.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidHyperParameter {
    /// The hyper-parameter's name, as the config's field (`beta_1`, `epsilon`…).
    pub name: &'static str,
    /// The value given.
    pub value: f64,
    /// What it must be, in words.
    pub expected: &'static str,
}

impl std::fmt::Display for InvalidHyperParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "optimizer hyper-parameter {} is {}: expected {}",
            self.name, self.value, self.expected
        )
    }
}

impl std::error::Error for InvalidHyperParameter {}

/// AdamW that updates each parameter and its two moments in one pass, in
/// place where it owns them, on the devices [`FusedOps`] supports; burn's
/// [`AdamW`] elsewhere. Its state is burn's [`AdamWState`], so optimizer
/// states saved by either load into the other.
///
/// burn's AdamW runs about fifteen tensor operations per parameter, each a
/// pass over it; on MiniLM's 22.7 million parameters that is most of a
/// step's optimizer time.
#[derive(Clone)]
pub struct FusedAdamW {
    config: FusedAdamWConfig,
    fallback: AdamW,
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let amsgrad = state
            .as_ref()
            .is_some_and(|s| s.momentum.max_moment_2.is_some());
        if !crate::fused_for(&tensor) || tensor.dims() != grad.dims() || amsgrad {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let (time, m, v) = match state {
            Some(s) => (
                s.momentum.time + 1,
                s.momentum.moment_1,
                s.momentum.moment_2,
            ),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let c = &self.config;
        let (p, m, v) = <burn::backend::Dispatch as FusedOps>::fused_adamw(
            tensor.into_dispatch(),
            grad.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            [
                lr,
                f64::from(c.beta_1),
                f64::from(c.beta_2),
                f64::from(c.epsilon),
                f64::from(c.weight_decay),
                time as f64,
            ],
        );
        let momentum = AdaptiveMomentumState {
            time,
            moment_1: Tensor::from_dispatch(m),
            moment_2: Tensor::from_dispatch(v),
            max_moment_2: None,
        };
        (Tensor::from_dispatch(p), Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
