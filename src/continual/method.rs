//! Method: the presets (`ncl`, `dga`, `das`, `ewc` and the two controls) and
//! every option of the continual loop, as one serialisable configuration.

use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};
use softmask_kernels::FusedAdamWConfig;

use crate::error::{Error, Result};
use crate::importance::Normalization;
use crate::importance::estimate::{Accumulation, GradientSign};
use crate::mask::MaskMode;

/// A control that keeps the amount of damping of the real mask and drops the
/// choice of units (docs/method.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    /// The real, importance-targeted mask.
    None,
    /// Importance values permuted within each layer (row), seeded.
    Permuted,
    /// Every unit of a layer damped by the layer's mean mask.
    Uniform,
}

/// What the general importance (before the first domain) is estimated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeneralProxy {
    /// DAS's proxy: KL between two dropout passes, on the first domain's
    /// data (the general knowledge is never seen).
    #[default]
    DropoutKl,
    /// The positive control (`das-oracle`): the training objective as proxy
    /// on the general corpus itself
    /// ([`ContinualTrainer::with_general_corpus`](super::ContinualTrainer::with_general_corpus)),
    /// the knowledge being scored.
    CorpusLoss,
}

/// The optimizer, with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// AdamW with decoupled weight decay:
    /// [`FusedAdamW`](softmask_kernels::FusedAdamW), one pass per parameter
    /// on Flex and burn's `AdamW` elsewhere, with burn's state format.
    AdamW {
        /// Weight decay.
        weight_decay: f64,
        /// Added to `sqrt(v)` (1e-8 as PyTorch's default, when a saved
        /// configuration has none). A first step moves a weight by about
        /// `lr · g / (|g| + epsilon)`, so gradients far below epsilon barely
        /// move it, and ones near it move it by a part of `lr` that float
        /// rounding of `g` decides.
        #[serde(default = "adamw_epsilon")]
        epsilon: f64,
    },
    /// SGD with (PyTorch-style, undampened) momentum.
    Sgd {
        /// Momentum factor; 0 for plain SGD.
        momentum: f64,
    },
}

/// One (no gradient accumulation), for configurations saved without it.
fn one() -> usize {
    1
}

/// AdamW's default epsilon, PyTorch's.
fn adamw_epsilon() -> f64 {
    1e-8
}

impl OptimizerKind {
    /// AdamW with weight decay `weight_decay` and PyTorch's epsilon, 1e-8.
    ///
    /// ```
    /// use softmask::continual::OptimizerKind;
    ///
    /// let adamw = OptimizerKind::adamw(0.01);
    /// assert_eq!(adamw, OptimizerKind::AdamW { weight_decay: 0.01, epsilon: 1e-8 });
    /// ```
    pub fn adamw(weight_decay: f64) -> OptimizerKind {
        OptimizerKind::AdamW {
            weight_decay,
            epsilon: adamw_epsilon(),
        }
    }

    /// A fresh burn optimizer.
    ///
    /// # Errors
    ///
    /// [`Error::HyperParameter`] for a weight decay or momentum outside `[0, 1)`.
    pub fn init(&self) -> Result<ModuleOptimizer> {
        self.validate()?;
        Ok(match *self {
            OptimizerKind::AdamW {
                weight_decay,
                epsilon,
            } => FusedAdamWConfig::new()
                .with_epsilon(epsilon as f32)
                .with_weight_decay(weight_decay as f32)
                .init()?,
            OptimizerKind::Sgd { momentum } if momentum > 0.0 => SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0),
                ))
                .init(),
            OptimizerKind::Sgd { .. } => SgdConfig::new().init(),
        })
    }

    /// Checks the hyper-parameters: weight decay and momentum finite and in `[0, 1)`, AdamW's epsilon finite and positive.
    ///
    /// # Errors
    ///
    /// [`Error::HyperParameter`] naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        if let OptimizerKind::AdamW { epsilon, .. } = *self
            && !(epsilon.is_finite() && epsilon > 0.0 && epsilon as f32 > 0.0)
        {
            return Err(Error::HyperParameter {
                name: "epsilon".into(),
                value: epsilon,
                expected: "a finite value above 0 (and above f32's smallest)".into(),
            });
        }
        let (name, value) = match *self {
            OptimizerKind::AdamW { weight_decay, .. } => ("weight_decay", weight_decay),
            OptimizerKind::Sgd { momentum } => ("momentum", momentum),
        };
        if (0.0..1.0).contains(&value) {
            Ok(())
        } else {
            Err(Error::HyperParameter {
                name: name.into(),
                value,
                expected: "a finite value in [0, 1)".into(),
            })
        }
    }
}

/// Every option of a continual run. Start from a preset ([`MethodConfig::preset`])
/// and override fields; [`validate`](Self::validate) checks the whole.
///
/// # Example
///
/// ```
/// use softmask::continual::MethodConfig;
///
/// let mut das = MethodConfig::preset("das")?;
/// das.steps_per_domain = 50;
/// das.strength = 0.5; // mask 1 - 0.5 * I
/// das.validate()?;
/// assert!(MethodConfig::preset("hat").is_err());
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodConfig {
    /// The preset this configuration started from (a label in results).
    pub name: String,
    /// Estimate the general importance (KL between two dropout passes) on the
    /// first domain's data before training it.
    pub general_importance: bool,
    /// Estimate each domain's importance (its training loss as proxy) after training it.
    pub domain_importance: bool,
    /// Gates whose importance is applied; `None` for all (DGA: `["heads"]`).
    pub masked_gates: Option<Vec<String>>,
    /// The real mask or one of the two controls at equal damping.
    pub control: Control,
    /// Gradient or update masking.
    pub mask_mode: MaskMode,
    /// Damping strength `s` in `[0, 1]`: the mask is `1 - s * I`.
    pub strength: f64,
    /// Damping of the parameters no gate governs (embeddings, MLM head,
    /// LayerNorms), in `[0, 1]`: their updates are scaled by `1 - c`.
    pub ungoverned_damping: f64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of each domain's steps spent warming the learning rate up
    /// linearly from 0; it then decays linearly to 0 (Hugging Face's schedule).
    pub warmup_fraction: f64,
    /// Optimizer steps per domain.
    pub steps_per_domain: usize,
    /// Chunks per training batch.
    pub batch_size: usize,
    /// Gradient accumulation: batches (of `batch_size` chunks each) whose
    /// gradients are averaged into each optimizer step; 1 for none. Over
    /// several ranks the gradients cross between them once per step, so a
    /// larger value amortises that copy.
    #[serde(default = "one")]
    pub accumulate: usize,
    /// Tokens per chunk.
    pub seq_len: usize,
    /// Batches for each importance estimate (and each Fisher estimate).
    pub importance_batches: usize,
    /// Chunks per importance batch; `None` uses `batch_size`. With 1 and
    /// [`GradientSign::Absolute`] the importance sums per-example absolute
    /// gate gradients, as the paper defines it.
    #[serde(default)]
    pub importance_batch_size: Option<usize>,
    /// Normalisation of raw importance.
    pub normalization: Normalization,
    /// Summing of per-batch gate gradients.
    pub accumulation: Accumulation,
    /// Signed or absolute gate gradients.
    pub sign: GradientSign,
    /// Add DAS's contrastive term to the loss. Its third view applies the
    /// importance in force (after the control and the strength) as forward
    /// gates; while no importance exists yet, the term is left out.
    pub contrastive: bool,
    /// Temperature of the contrastive term.
    pub temperature: f64,
    /// EWC's penalty weight lambda; 0 turns EWC off.
    pub ewc_lambda: f64,
    /// Seed of every random choice: batch order, masking, dropout, controls.
    pub seed: u64,
    /// Write a checkpoint every this many steps (0: only after each domain).
    pub checkpoint_every: usize,
    /// Replay: this fraction of every training batch's rows (rounded, at
    /// least one when above 0) is drawn from a replay corpus
    /// ([`ContinualTrainer::with_general_corpus`](super::ContinualTrainer::with_general_corpus)),
    /// the rest from the domain; 0 for none. Below 1.
    #[serde(default)]
    pub replay_fraction: f64,
    /// Distillation to the model as it was before the domain (LwF-style,
    /// the `kd` baseline of the method's reference code): this weight times
    /// `KL(teacher ‖ model)` of the objective's logits (temperature 1,
    /// averaged over the scored positions) is added to the loss; 0 for none.
    #[serde(default)]
    pub kd_lambda: f64,
    /// How the general importance is estimated (when `general_importance`).
    #[serde(default)]
    pub general_proxy: GeneralProxy,
}

/// The preset names [`MethodConfig::preset`] knows.
pub const PRESETS: [&str; 11] = [
    "ncl",
    "dga",
    "das",
    "ewc",
    "das-permuted",
    "das-uniform",
    "replay",
    "kd",
    "das-oracle",
    "das-oracle-permuted",
    "das-oracle-uniform",
];

impl MethodConfig {
    /// A documented preset:
    ///
    /// | name | what |
    /// |---|---|
    /// | `ncl` | naive continual learning: MLM, no mask |
    /// | `dga` | the general importance only, heads only, update mask |
    /// | `das` | general + accumulated domain importance, all gates, contrastive term |
    /// | `ewc` | MLM with EWC's quadratic penalty (lambda 5000, in the 1e3–1e4 range continual-learning code uses), no mask |
    /// | `das-permuted` | `das` with importance permuted within each layer |
    /// | `das-uniform` | `das` with each layer damped by its mean mask |
    /// | `replay` | `ncl` with a quarter of every batch's rows replayed from a general corpus |
    /// | `kd` | `ncl` plus distillation to the model before the domain (lambda 1) |
    /// | `das-oracle` | `das` with the general importance from the objective on the general corpus (the positive control) |
    /// | `das-oracle-permuted`, `das-oracle-uniform` | its two controls |
    ///
    /// All share AdamW (weight decay 0.01), lr 5e-5 with 10% warm-up, 200
    /// steps per domain of 8 × 128 tokens, 16 importance batches, the
    /// reference normalisation, per-batch signed gradients, temperature 0.05,
    /// seed 0.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the presets for an unknown name.
    pub fn preset(name: &str) -> Result<MethodConfig> {
        let base = MethodConfig {
            name: name.to_string(),
            general_importance: false,
            domain_importance: false,
            masked_gates: None,
            control: Control::None,
            mask_mode: MaskMode::Update,
            strength: 1.0,
            ungoverned_damping: 0.0,
            optimizer: OptimizerKind::adamw(0.01),
            lr: 5e-5,
            warmup_fraction: 0.1,
            steps_per_domain: 200,
            batch_size: 8,
            seq_len: 128,
            accumulate: 1,
            importance_batches: 16,
            importance_batch_size: None,
            normalization: Normalization::Reference,
            accumulation: Accumulation::PerBatch,
            sign: GradientSign::Signed,
            contrastive: false,
            temperature: 0.05,
            ewc_lambda: 0.0,
            seed: 0,
            checkpoint_every: 0,
            replay_fraction: 0.0,
            kd_lambda: 0.0,
            general_proxy: GeneralProxy::DropoutKl,
        };
        let das = MethodConfig {
            general_importance: true,
            domain_importance: true,
            contrastive: true,
            ..base.clone()
        };
        Ok(match name {
            "ncl" => base,
            "dga" => MethodConfig {
                general_importance: true,
                masked_gates: Some(vec!["heads".into()]),
                ..base
            },
            "das" => das,
            "ewc" => MethodConfig {
                ewc_lambda: 5000.0,
                ..base
            },
            "das-permuted" => MethodConfig {
                control: Control::Permuted,
                ..das
            },
            "das-uniform" => MethodConfig {
                control: Control::Uniform,
                ..das
            },
            "replay" => MethodConfig {
                replay_fraction: 0.25,
                ..base
            },
            "kd" => MethodConfig {
                kd_lambda: 1.0,
                ..base
            },
            "das-oracle" | "das-oracle-permuted" | "das-oracle-uniform" => MethodConfig {
                general_proxy: GeneralProxy::CorpusLoss,
                control: match name {
                    "das-oracle-permuted" => Control::Permuted,
                    "das-oracle-uniform" => Control::Uniform,
                    _ => Control::None,
                },
                ..das
            },
            other => {
                return Err(Error::InvalidConfig(format!(
                    "unknown method {other:?}; the presets are {PRESETS:?}"
                )));
            }
        })
    }

    /// The configuration in the JSON file `path` (as a run folder's
    /// `config.json`): every field named (`importance_batch_size` may be
    /// left out), none unknown. Not validated: call
    /// [`validate`](Self::validate).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for an unreadable file, [`Error::CorruptFile`] naming
    /// the file and the field for one that is not a method configuration.
    ///
    /// # Example
    ///
    /// ```
    /// use softmask::continual::MethodConfig;
    ///
    /// let path = std::env::temp_dir().join(format!("das-{}.json", std::process::id()));
    /// let mut das = MethodConfig::preset("das")?;
    /// das.steps_per_domain = 50;
    /// das.save(&path)?;
    /// assert_eq!(MethodConfig::load(&path)?, das);
    /// # std::fs::remove_file(path).ok();
    /// # Ok::<(), softmask::Error>(())
    /// ```
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<MethodConfig> {
        let path = path.as_ref();
        let bytes = crate::io::read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::CorruptFile {
            path: path.to_path_buf(),
            reason: format!("not a method configuration ({e})"),
        })
    }

    /// Writes the configuration as pretty JSON to `path`, atomically.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::io::write_atomic(path.as_ref(), self.to_json()?.as_bytes())
    }

    /// The configuration as pretty JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Serialization`] should serde fail (it does not for this type).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Serialization {
            what: "the method configuration".into(),
            reason: e.to_string(),
        })
    }

    /// Chunks per importance (and Fisher) batch.
    pub fn importance_batch(&self) -> usize {
        self.importance_batch_size.unwrap_or(self.batch_size)
    }

    /// Rows of every training batch drawn from the replay corpus:
    /// `replay_fraction × batch_size` rounded, at least 1 when the fraction
    /// is above 0.
    pub fn replay_rows(&self) -> usize {
        match self.replay_fraction > 0.0 {
            true => ((self.replay_fraction * self.batch_size as f64).round() as usize).max(1),
            false => 0,
        }
    }

    /// Whether the run needs a general training corpus: it replays, or
    /// estimates its general importance on it.
    pub fn uses_general_corpus(&self) -> bool {
        self.replay_rows() > 0
            || (self.general_importance && self.general_proxy == GeneralProxy::CorpusLoss)
    }

    /// Whether any importance is ever applied.
    pub fn masks(&self) -> bool {
        self.general_importance || self.domain_importance
    }

    /// Checks every option's range; the message names the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| {
            Err(Error::InvalidConfig(format!(
                "method {:?}: {what}",
                self.name
            )))
        };
        for (what, v) in [
            ("steps_per_domain", self.steps_per_domain),
            ("batch_size", self.batch_size),
            ("accumulate", self.accumulate),
            ("seq_len", self.seq_len),
            ("importance_batches", self.importance_batches),
            (
                "importance_batch_size",
                self.importance_batch_size.unwrap_or(self.batch_size),
            ),
        ] {
            if v == 0 {
                return bad(format!("{what} must be at least 1"));
            }
        }
        for (what, v) in [
            ("strength", self.strength),
            ("ungoverned_damping", self.ungoverned_damping),
            ("warmup_fraction", self.warmup_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{what} must lie in [0, 1], got {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.replay_fraction) {
            return bad(format!(
                "replay_fraction must lie in [0, 1), got {}",
                self.replay_fraction
            ));
        }
        if self.replay_fraction > 0.0 && self.replay_rows() >= self.batch_size {
            return bad(format!(
                "replay_fraction {} of batch_size {} leaves no row for the domain",
                self.replay_fraction, self.batch_size
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!(
                "temperature must be positive, got {}",
                self.temperature
            ));
        }
        if !(self.kd_lambda.is_finite() && self.kd_lambda >= 0.0) {
            return bad(format!(
                "kd_lambda must be 0 or more, got {}",
                self.kd_lambda
            ));
        }
        if !(self.ewc_lambda.is_finite() && self.ewc_lambda >= 0.0) {
            return bad(format!(
                "ewc_lambda must be 0 or more, got {}",
                self.ewc_lambda
            ));
        }
        self.optimizer.validate()?;
        if self.control != Control::None && !self.masks() {
            return bad("a control needs importance to permute or average".into());
        }
        if self.seq_len > crate::limits::MAX_SEQ_LENGTH {
            return bad(format!("seq_len {} is past MAX_SEQ_LENGTH", self.seq_len));
        }
        Ok(())
    }

    /// The learning rate of step `step` of a domain: linear warm-up from 0
    /// over `warmup_fraction` of the steps, then linear decay to 0
    /// (Hugging Face's `get_linear_schedule_with_warmup`).
    pub fn lr_at(&self, step: usize) -> f64 {
        let total = self.steps_per_domain as f64;
        let warm = (self.warmup_fraction * total).round();
        let s = step as f64;
        let factor = if s < warm {
            s / warm
        } else {
            ((total - s) / (total - warm).max(1.0)).max(0.0)
        };
        self.lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_differ_where_documented_and_validate() {
        for name in PRESETS {
            MethodConfig::preset(name).unwrap().validate().unwrap();
        }
        let ncl = MethodConfig::preset("ncl").unwrap();
        assert!(!ncl.masks() && !ncl.contrastive && ncl.ewc_lambda == 0.0);
        let dga = MethodConfig::preset("dga").unwrap();
        assert!(dga.general_importance && !dga.domain_importance);
        assert_eq!(dga.masked_gates, Some(vec!["heads".to_string()]));
        let das = MethodConfig::preset("das").unwrap();
        assert!(das.general_importance && das.domain_importance && das.contrastive);
        assert_eq!(
            MethodConfig::preset("das-uniform").unwrap().control,
            Control::Uniform
        );
        let err = MethodConfig::preset("hat").unwrap_err();
        assert!(err.to_string().contains("unknown method \"hat\""), "{err}");
        let replay = MethodConfig::preset("replay").unwrap();
        assert_eq!((replay.replay_fraction, replay.replay_rows()), (0.25, 2));
        assert!(!replay.masks() && ncl.replay_rows() == 0);
    }

    #[test]
    fn replay_leaves_the_domain_at_least_one_row() {
        let mut c = MethodConfig::preset("replay").unwrap();
        c.batch_size = 2;
        c.replay_fraction = 0.1; // rounds to 0, taken as 1
        assert_eq!(c.replay_rows(), 1);
        c.validate().unwrap();
        for (f, says) in [
            (0.75, "leaves no row for the domain"),
            (1.0, "must lie in [0, 1)"),
            (-0.1, "must lie in [0, 1)"),
            (f64::NAN, "must lie in [0, 1)"),
        ] {
            c.replay_fraction = f;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{f}: {e}");
        }
    }

    #[test]
    fn the_schedule_warms_up_then_decays_to_zero() {
        let mut c = MethodConfig::preset("ncl").unwrap();
        c.steps_per_domain = 10;
        c.warmup_fraction = 0.2;
        c.lr = 1.0;
        let lrs: Vec<f64> = (0..10).map(|s| c.lr_at(s)).collect();
        assert_eq!(
            lrs,
            [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
        );
    }

    #[test]
    fn out_of_range_options_are_named() {
        let mut c = MethodConfig::preset("das").unwrap();
        c.strength = 1.5;
        assert!(c.validate().unwrap_err().to_string().contains("strength"));
        let mut c = MethodConfig::preset("ncl").unwrap();
        c.control = Control::Permuted;
        assert!(c.validate().unwrap_err().to_string().contains("control"));
        let mut c = MethodConfig::preset("das").unwrap();
        c.importance_batch_size = Some(0);
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("importance_batch_size must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn a_configuration_file_round_trips_and_unknown_fields_are_named() {
        let dir = std::env::temp_dir().join(format!("method-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        let mut c = MethodConfig::preset("ewc").unwrap();
        c.lr = 3e-4;
        c.save(&path).unwrap();
        assert_eq!(MethodConfig::load(&path).unwrap(), c);
        let mut json = serde_json::to_value(&c).unwrap();
        json["learning_rate"] = serde_json::json!(1e-3);
        std::fs::write(&path, json.to_string()).unwrap();
        let e = MethodConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("unknown field `learning_rate`"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn importance_batches_default_to_the_training_batch() {
        let mut c = MethodConfig::preset("das").unwrap();
        assert_eq!(c.importance_batch(), 8);
        c.importance_batch_size = Some(1);
        assert_eq!(c.importance_batch(), 1);
        // A manifest written before the option existed still reads, as `None`.
        let mut json = serde_json::to_value(MethodConfig::preset("das").unwrap()).unwrap();
        json.as_object_mut()
            .unwrap()
            .remove("importance_batch_size");
        let old: MethodConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old, MethodConfig::preset("das").unwrap());
    }
}
