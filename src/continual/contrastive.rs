//! DAS's knowledge-integration loss: a contrastive term between two dropout
//! views of the same batch and a view through the accumulated importance.

use burn::tensor::{Device, Tensor, TensorData};
use softmask_kernels::log_softmax;

use super::objective::ContinualModel;
use super::plugin::{DomainStart, Plugin, RankShare};
use crate::distributed::agree;
use crate::error::{Error, Result};
use crate::gate::Gates;
use crate::importance::Importance;
use crate::io::to_host;

/// Norms below this are clamped, as PyTorch's `cosine_similarity` does.
const EPS: f32 = 1e-8;

/// The DAS contrastive loss (docs/method.md §3).
///
/// `z1` and `z2` are two dropout views of the same batch, `z3` the view with
/// the accumulated importance applied as forward gates. For each row `i` of
/// `z1`, the logits are its cosine similarities to every row of `z2` and
/// every row of `z3`, divided by `temperature`; the positive is `z2[i]`, and
/// the loss is the mean cross-entropy over the rows.
///
/// # Shapes
///
/// - z1, z2, z3: `[batch, hidden]`
/// - output: `[1]`
///
/// # Errors
///
/// [`Error::ShapeMismatch`] when the three views differ in shape or are
/// empty, [`Error::InvalidConfig`] for a temperature that is not positive.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use softmask::continual::contrastive_loss;
///
/// let d = Device::default();
/// let z = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &d);
/// let away = Tensor::<2>::from_floats([[-1.0, 0.0], [0.0, -1.0]], &d);
/// // Positives identical, the other row orthogonal, the gated view opposite.
/// let loss = contrastive_loss(z.clone(), z, away, 1.0)?.into_scalar::<f32>();
/// let e = std::f32::consts::E;
/// let want = -(e / (e + 1.0 + 1.0 / e + 1.0)).ln();
/// assert!((loss - want).abs() < 1e-6);
/// # Ok::<(), softmask::Error>(())
/// ```
pub fn contrastive_loss(
    z1: Tensor<2>,
    z2: Tensor<2>,
    z3: Tensor<2>,
    temperature: f64,
) -> Result<Tensor<1>> {
    let dims = z1.dims();
    for (what, z) in [("z2", &z2), ("z3", &z3)] {
        if z.dims() != dims {
            return Err(Error::ShapeMismatch {
                what: format!("contrastive view {what}"),
                expected: format!("{dims:?}, the shape of z1"),
                actual: format!("{:?}", z.dims()),
            });
        }
    }
    let [batch, hidden] = dims;
    if batch == 0 || hidden == 0 {
        return Err(Error::ShapeMismatch {
            what: "contrastive views".into(),
            expected: "a non-empty [batch, hidden]".into(),
            actual: format!("{dims:?}"),
        });
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::InvalidConfig(format!(
            "contrastive temperature must be positive, got {temperature}"
        )));
    }
    let unit = |z: Tensor<2>| {
        let norm = z.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(EPS);
        z / norm
    };
    let (a, b, c) = (unit(z1), unit(z2), unit(z3));
    let others = Tensor::cat(vec![b, c], 0).transpose();
    let logits = a.matmul(others).div_scalar(temperature as f32);
    // The positive of row i is column i.
    let eye = Tensor::<2>::eye(batch, &logits.device());
    let eye = Tensor::cat(vec![eye.clone(), eye.zeros_like()], 1);
    let picked = (log_softmax(logits, 1) * eye).sum();
    Ok(picked.div_scalar(batch as f32).neg())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn matches_a_hand_computed_case_and_refuses_bad_shapes() {
        let d = Device::default();
        // Row 0 of z1 is [3, 4]: cosines to z2 rows [1, 0.6]; to z3 rows [0, -0.8].
        let z1 = Tensor::<2>::from_floats([[3.0, 4.0], [1.0, 0.0]], &d);
        let z2 = Tensor::<2>::from_floats([[6.0, 8.0], [0.0, 2.0]], &d);
        let z3 = Tensor::<2>::from_floats([[-4.0, 3.0], [0.0, -5.0]], &d);
        let t = 0.5;
        let row = |cos: [f64; 4], pos: usize| {
            let l: Vec<f64> = cos.iter().map(|c| c / t).collect();
            let lse = l.iter().map(|v| v.exp()).sum::<f64>().ln();
            lse - l[pos]
        };
        let want = (row([1.0, 0.8, -0.8, 0.0], 0) + row([0.6, 0.0, -0.8, 0.0], 1)) / 2.0;
        let got = contrastive_loss(z1.clone(), z2.clone(), z3, t)
            .unwrap()
            .into_scalar::<f32>();
        assert!((f64::from(got) - want).abs() < 1e-5, "{got} vs {want}");

        let small = Tensor::<2>::zeros([1, 2], &d);
        assert!(matches!(
            contrastive_loss(z1.clone(), z2.clone(), small, t),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            contrastive_loss(z1.clone(), z2.clone(), z2, 0.0),
            Err(Error::InvalidConfig(_))
        ));
    }
}

/// DAS's contrastive term as a plugin of the continual loop: once importance
/// exists, every step adds [`contrastive_loss`] between two dropout views of
/// the batch ([`ContinualModel::pooled`] without gates) and a view through
/// the importance in force as forward gates.
#[derive(Debug, Clone)]
pub struct ContrastivePlugin {
    temperature: f64,
    view: Option<Gates>,
}

impl ContrastivePlugin {
    /// A plugin at `temperature`.
    pub fn new(temperature: f64) -> ContrastivePlugin {
        ContrastivePlugin {
            temperature,
            view: None,
        }
    }
}

impl<M: ContinualModel<B>, B> Plugin<M, B> for ContrastivePlugin {
    fn name(&self) -> &str {
        "contrastive"
    }

    fn before_domain(&mut self, start: &DomainStart<'_>) -> Result<()> {
        // Without any importance yet there is no third view, and no term.
        self.view = match start.applied {
            Some(applied) => Some(gates_of(applied, start.device)?),
            None => None,
        };
        Ok(())
    }

    fn loss_term(&mut self, model: &M, batch: &B) -> Result<Option<Tensor<1>>> {
        let Some(view) = &self.view else {
            return Ok(None);
        };
        let z1 = model.pooled(batch, None)?;
        let z2 = model.pooled(batch, None)?;
        let z3 = model.pooled(batch, Some(view))?;
        contrastive_loss(z1, z2, z3, self.temperature).map(Some)
    }

    /// Every row of the batch is a negative of every other, so each rank
    /// gathers the three views of all rows (its own live, the others'
    /// constant) and computes the whole term: its gradient through this
    /// rank's rows is exact, and the ranks' gradients sum to one process's.
    /// The value is split evenly, `L - (1 - 1/N)·detach(L)`, so that it
    /// sums to `L`.
    fn loss_term_shard(
        &mut self,
        model: &M,
        share: &RankShare<'_, B>,
    ) -> Result<Option<Tensor<1>>> {
        let c = share.collective;
        let size = c.size();
        if size == 1 {
            return Plugin::<M, B>::loss_term(self, model, share.batch);
        }
        let Some(view) = &self.view else {
            return Ok(None);
        };
        let (total, first) = (share.total_rows, share.rows.start);
        // The local views, agreed by every rank before the gather: a rank
        // that fails here must not leave the others in the all-reduce.
        let local = (|| {
            let views = [
                model.pooled(share.batch, None)?,
                model.pooled(share.batch, None)?,
                model.pooled(share.batch, Some(view))?,
            ];
            let [rows, _] = views[0].dims();
            if rows != share.rows.len() || first + rows > total {
                return Err(Error::ShapeMismatch {
                    what: "a rank's contrastive views".into(),
                    expected: format!("{} rows", share.rows.len()),
                    actual: format!("{rows}"),
                });
            }
            let host = views
                .iter()
                .map(|z| Ok(to_host(z.clone().detach())?.values))
                .collect::<Result<Vec<_>>>()?;
            Ok((views, host))
        })();
        let (local, host) = agree(c, "the contrastive views", local)?;
        let [rows, hidden] = local[0].dims();
        // Every rank's hidden size is the model's (the ranks were checked).
        let mut all = vec![0f32; 3 * total * hidden];
        for (v, values) in host.iter().enumerate() {
            let at = (v * total + first) * hidden;
            all[at..at + rows * hidden].copy_from_slice(values);
        }
        c.all_reduce_sum(&mut all)?;
        let device = local[0].device();
        let whole = |v: usize, z: Tensor<2>| -> Tensor<2> {
            let part = |from: usize, to: usize| {
                let values = all[(v * total + from) * hidden..(v * total + to) * hidden].to_vec();
                Tensor::<2>::from_data(TensorData::new(values, [to - from, hidden]), &device)
            };
            let mut pieces = Vec::with_capacity(3);
            if first > 0 {
                pieces.push(part(0, first));
            }
            pieces.push(z);
            if first + rows < total {
                pieces.push(part(first + rows, total));
            }
            Tensor::cat(pieces, 0)
        };
        let [z1, z2, z3] = local;
        let loss = contrastive_loss(whole(0, z1), whole(1, z2), whole(2, z3), self.temperature)?;
        let spread = 1.0 - 1.0 / size as f32;
        Ok(Some(loss.clone() - loss.detach().mul_scalar(spread)))
    }
}

/// The gates of an importance, as tensors on `device`: DAS's forward view.
fn gates_of(importance: &Importance, device: &Device) -> Result<Gates> {
    let layout = importance.layout();
    let tensors = importance
        .gates()
        .iter()
        .map(|g| {
            Tensor::<2>::from_data(TensorData::new(g.values.clone(), [g.rows, g.units]), device)
        })
        .collect();
    Gates::from_tensors(tensors, &layout)
}
