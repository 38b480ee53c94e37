//! Governed: which parameters each gate's units own, the one trait a model
//! implements to be soft-masked.

use burn::module::ParamId;

use super::layout::GateLayout;

/// A model whose units carry gates: the one trait a model implements to use
/// importance estimation and soft-masking.
///
/// # Example
///
/// A model with one gated dense layer of 3 units:
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use softmask::{GateLayout, GateSpec, Governed, SoftMaskable};
///
/// #[derive(Module, Debug)]
/// struct Tiny {
///     fc: Linear,
/// }
///
/// impl SoftMaskable for Tiny {
///     fn gate_layout(&self) -> GateLayout {
///         GateLayout::new(vec![GateSpec::new("fc", 1, 3)])
///     }
///     fn governed(&self) -> Vec<Governed> {
///         // burn's Linear weight is [in, out]: units index axis 1.
///         let mut g = vec![Governed::neurons(0, 0, self.fc.weight.id, 1)];
///         if let Some(b) = &self.fc.bias {
///             g.push(Governed::neurons(0, 0, b.id, 0));
///         }
///         g
///     }
/// }
///
/// let tiny = Tiny { fc: LinearConfig::new(2, 3).init(&Default::default()) };
/// assert_eq!(tiny.governed().len(), 2);
/// ```
pub trait SoftMaskable {
    /// The gates, in a fixed order, e.g. `fc1: [1, 30]`, `fc2: [1, 10]`, or a
    /// transformer's `heads: [layers, heads]`.
    fn gate_layout(&self) -> GateLayout;

    /// For each gate row, the parameters its units feed and along which axis.
    fn governed(&self) -> Vec<Governed>;
}

/// One parameter governed by one row of one gate.
///
/// Unit `u` of the row owns the `span` consecutive entries
/// `u * span .. (u + 1) * span` of the parameter's `axis`, so
/// `shape[axis] == units * span`; or, with `group > 1`, units
/// `b * group .. (b + 1) * group` share block `b`
/// (`shape[axis] == units / group * span`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Governed {
    /// Index of the gate in the model's [`GateLayout`].
    pub gate: usize,
    /// Row of that gate (the layer, for stacked gates).
    pub row: usize,
    /// The parameter.
    pub param: ParamId,
    /// The parameter axis that indexes units.
    pub axis: usize,
    /// Consecutive entries per unit: 1 for a neuron, `head_dim` for a head.
    pub span: usize,
    /// Units that share each block of `span` entries: 1 when every unit owns
    /// its own; for grouped-query attention, the query heads that read one
    /// key/value head. A shared block is damped by the largest (most
    /// protective) importance among the units sharing it, so it is never
    /// damped less than any unit that reads it.
    pub group: usize,
}

impl Governed {
    /// A parameter whose `axis` has one entry per unit (a neuron).
    pub fn neurons(gate: usize, row: usize, param: ParamId, axis: usize) -> Governed {
        Governed::blocks(gate, row, param, axis, 1)
    }

    /// A parameter whose `axis` has `span` consecutive entries per unit (an
    /// attention head's `head_dim` block).
    pub fn blocks(gate: usize, row: usize, param: ParamId, axis: usize, span: usize) -> Governed {
        Governed::shared(gate, row, param, axis, span, 1)
    }

    /// A parameter whose `axis` has `span` entries per block, each block
    /// shared by `group` consecutive units (a key/value head read by `group`
    /// query heads): `shape[axis] == units / group * span`, and each block is
    /// damped by the largest importance among its units.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::module::ParamId;
    /// use softmask::Governed;
    ///
    /// // 9 query heads of dim 64 share 3 key heads: k_proj has 3 * 64 rows.
    /// let k = Governed::shared(0, 0, ParamId::new(), 0, 64, 3);
    /// assert_eq!((k.span, k.group), (64, 3));
    /// ```
    pub fn shared(
        gate: usize,
        row: usize,
        param: ParamId,
        axis: usize,
        span: usize,
        group: usize,
    ) -> Governed {
        Governed {
            gate,
            row,
            param,
            axis,
            span,
            group,
        }
    }
}
