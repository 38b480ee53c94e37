//! `kd`: distillation to the model as it was before the domain (LwF-style,
//! the knowledge-distillation baseline of the method's reference code), as a
//! plugin of the loop.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use softmask_kernels::log_softmax;

use super::objective::ContinualModel;
use super::plugin::{DomainEnd, DomainStart, Plugin};
use crate::error::{Error, Result};
use crate::importance::proxy::frozen;

/// The folder of a mid-domain checkpoint that holds kd's teacher.
pub(crate) const KD_TEACHER: &str = "kd-teacher";

/// `KL(teacher ‖ student)` of two logit matrices at temperature 1, summed
/// over the vocabulary and averaged over the rows (scored positions).
///
/// # Shapes
///
/// - student, teacher: `[positions, vocab]`
/// - output: `[1]`
///
/// # Errors
///
/// [`Error::ShapeMismatch`] for logits of different shapes,
/// [`Error::BadBatch`] for no rows.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use softmask::continual::kd::distillation_kl;
///
/// let d = Device::default();
/// let t = Tensor::<2>::from_floats([[1.0, 2.0, 3.0]], &d);
/// assert_eq!(distillation_kl(t.clone(), t.clone())?.into_scalar::<f32>(), 0.0);
/// let s = Tensor::<2>::from_floats([[3.0, 2.0, 1.0]], &d);
/// assert!(distillation_kl(s, t)?.into_scalar::<f32>() > 0.0);
/// # Ok::<(), softmask::Error>(())
/// ```
pub fn distillation_kl(student: Tensor<2>, teacher: Tensor<2>) -> Result<Tensor<1>> {
    if student.dims() != teacher.dims() {
        return Err(Error::ShapeMismatch {
            what: "kd's student and teacher logits".into(),
            expected: format!("{:?}", teacher.dims()),
            actual: format!("{:?}", student.dims()),
        });
    }
    let [n, _] = student.dims();
    if n == 0 {
        return Err(Error::BadBatch("kd has no scored position".into()));
    }
    let log_t = log_softmax(teacher, 1);
    let log_s = log_softmax(student, 1);
    Ok((log_t.clone().exp() * (log_t - log_s))
        .sum()
        .div_scalar(n as f32)
        .reshape([1]))
}

/// Adds `lambda · KL(teacher ‖ model)` of the objective's logits
/// ([`ContinualModel::objective_logits`]) to every step's loss; the teacher
/// is the model as it was at the domain's first step, frozen. It runs as the
/// model does (a BERT's dropout included), without gradients. A mid-domain
/// checkpoint keeps the teacher's weights (a copy of the model's), so a
/// resumed run distils to the same teacher.
#[derive(Debug, Clone)]
pub struct KdPlugin<M> {
    lambda: f64,
    teacher: Option<M>,
    /// A checkpoint's teacher folder, loaded at the first step after resume.
    pending: Option<PathBuf>,
    /// Set by [`Plugin::restore`]: the next domain start keeps the teacher.
    restored: bool,
}

impl<M> KdPlugin<M> {
    /// A plugin with weight `lambda` and no teacher yet.
    pub fn new(lambda: f64) -> KdPlugin<M> {
        KdPlugin {
            lambda,
            teacher: None,
            pending: None,
            restored: false,
        }
    }
}

impl<M: ContinualModel<B>, B> Plugin<M, B> for KdPlugin<M> {
    fn name(&self) -> &str {
        "kd"
    }

    fn before_domain(&mut self, _start: &DomainStart<'_>) -> Result<()> {
        if !std::mem::take(&mut self.restored) {
            self.teacher = None;
            self.pending = None;
        }
        Ok(())
    }

    fn loss_term(&mut self, model: &M, batch: &B) -> Result<Option<Tensor<1>>> {
        let teacher = match self.teacher.take() {
            Some(t) => t,
            None => match self.pending.take() {
                Some(dir) => frozen(&model.load_weights(&dir)?),
                None => frozen(model),
            },
        };
        let target = teacher.objective_logits(batch)?.detach();
        self.teacher = Some(teacher);
        let kl = distillation_kl(model.objective_logits(batch)?, target)?;
        Ok(Some(kl.mul_scalar(self.lambda)))
    }

    fn after_domain(&mut self, _model: &M, _end: &DomainEnd<'_, B>) -> Result<()> {
        self.teacher = None;
        Ok(())
    }

    /// Writes the teacher's weights into `kd-teacher/` while a domain is
    /// under way (none at a domain's end: the next teacher is the model).
    fn save(&self, dir: &Path) -> Result<bool> {
        if let Some(t) = &self.teacher {
            let folder = dir.join(KD_TEACHER);
            std::fs::create_dir_all(&folder).map_err(|source| Error::Io {
                path: folder.clone(),
                source,
            })?;
            t.save_weights(&folder)?;
        }
        Ok(false)
    }

    fn restore(&mut self, dir: &Path, _device: &Device) -> Result<()> {
        let folder = dir.join(KD_TEACHER);
        if folder.is_dir() {
            self.pending = Some(folder);
            self.restored = true;
        }
        Ok(())
    }
}
