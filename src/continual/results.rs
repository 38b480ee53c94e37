//! Results: the matrix of held-out losses after every domain, and what it
//! gives: forgetting, backward transfer, gain.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Held-out losses of one run: the base model's, then one row after each
/// domain, over the same columns (the general corpus, if any, then every
/// domain of the sequence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMatrix {
    /// The method's name.
    pub method: String,
    /// Column names: `general` (when a general corpus was given) and the domains, in order.
    pub columns: Vec<String>,
    /// The domains of the sequence, in training order.
    pub domains: Vec<String>,
    /// Held-out loss of the base model on each column.
    pub base: Vec<f32>,
    /// `after[t][c]`: held-out loss on column `c` after training domain `t`.
    pub after: Vec<Vec<f32>>,
}

/// The figures derived from a [`ResultMatrix`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Per earlier domain (all but the last): loss after the last domain minus
    /// loss right after training it. Positive means forgotten.
    pub forgetting: Vec<(String, f32)>,
    /// Mean of `forgetting` (0 with a single domain).
    pub mean_forgetting: f32,
    /// Backward transfer, `-mean_forgetting`: positive when later domains
    /// helped earlier ones.
    pub backward_transfer: f32,
    /// Per domain: base loss minus loss right after training it (what the
    /// domain taught).
    pub gain: Vec<(String, f32)>,
    /// Change of the general held-out loss after the last domain versus the
    /// base model (positive means general knowledge lost), if a general corpus was given.
    pub general_change: Option<f32>,
}

impl ResultMatrix {
    /// An empty matrix with the base model's losses.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] when `base` does not have one loss per column.
    pub fn new(method: &str, general: bool, domains: &[String], base: Vec<f32>) -> Result<Self> {
        let columns: Vec<String> = general
            .then(|| "general".to_string())
            .into_iter()
            .chain(domains.iter().cloned())
            .collect();
        if base.len() != columns.len() {
            return Err(Error::ShapeMismatch {
                what: "base losses".into(),
                expected: format!("{} columns", columns.len()),
                actual: format!("{}", base.len()),
            });
        }
        Ok(ResultMatrix {
            method: method.to_string(),
            columns,
            domains: domains.to_vec(),
            base,
            after: Vec::new(),
        })
    }

    /// Adds the row after the next domain.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] for a row of another width or past the last domain.
    pub fn push(&mut self, row: Vec<f32>) -> Result<()> {
        if row.len() != self.columns.len() || self.after.len() >= self.domains.len() {
            return Err(Error::ShapeMismatch {
                what: "result row".into(),
                expected: format!(
                    "{} losses, at most {} rows",
                    self.columns.len(),
                    self.domains.len()
                ),
                actual: format!("{} losses as row {}", row.len(), self.after.len() + 1),
            });
        }
        self.after.push(row);
        Ok(())
    }

    /// Checks that the matrix is consistent (as one read from a file must
    /// be before it is used): columns are `general` (optionally) then the
    /// domains, every row has a loss per column, no more rows than domains.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming what disagrees.
    pub fn check(&self) -> Result<()> {
        let general = self.columns.first().is_some_and(|c| c == "general");
        let expected: Vec<&String> = self.domains.iter().collect();
        let got: Vec<&String> = self.columns.iter().skip(usize::from(general)).collect();
        let bad = |what: &str, expected: String, actual: String| {
            Err(Error::ShapeMismatch {
                what: format!("result matrix {what}"),
                expected,
                actual,
            })
        };
        if got != expected {
            return bad(
                "columns",
                format!("{:?}", self.domains),
                format!("{:?}", self.columns),
            );
        }
        if self.after.len() > self.domains.len() {
            return bad(
                "rows",
                format!("at most {}", self.domains.len()),
                self.after.len().to_string(),
            );
        }
        if let Some(row) = std::iter::once(&self.base)
            .chain(&self.after)
            .find(|r| r.len() != self.columns.len())
        {
            return bad(
                "row width",
                self.columns.len().to_string(),
                row.len().to_string(),
            );
        }
        Ok(())
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Forgetting, backward transfer, gain and general change over the rows so far.
    pub fn summary(&self) -> Summary {
        let done = self.after.len();
        let col = |d: &String| self.column(d).unwrap_or(0);
        let forgetting: Vec<(String, f32)> = match self.after.last() {
            Some(last) => self.domains[..done.saturating_sub(1)]
                .iter()
                .enumerate()
                .map(|(t, d)| (d.clone(), last[col(d)] - self.after[t][col(d)]))
                .collect(),
            None => Vec::new(),
        };
        let mean_forgetting = if forgetting.is_empty() {
            0.0
        } else {
            forgetting.iter().map(|(_, f)| f).sum::<f32>() / forgetting.len() as f32
        };
        let gain = self.domains[..done]
            .iter()
            .enumerate()
            .map(|(t, d)| (d.clone(), self.base[col(d)] - self.after[t][col(d)]))
            .collect();
        let general_change = match (self.column("general"), self.after.last()) {
            (Some(g), Some(last)) => Some(last[g] - self.base[g]),
            _ => None,
        };
        Summary {
            forgetting,
            mean_forgetting,
            backward_transfer: -mean_forgetting,
            gain,
            general_change,
        }
    }

    /// The matrix as CSV: a header `stage,<columns>`, then `base` and one
    /// row per finished domain, named `after:<domain>`.
    pub fn to_csv(&self) -> String {
        let mut out = format!("stage,{}\n", self.columns.join(","));
        let row = |name: String, values: &[f32]| {
            let v: Vec<String> = values.iter().map(|x| format!("{x:.6}")).collect();
            format!("{name},{}\n", v.join(","))
        };
        out += &row("base".into(), &self.base);
        for (d, r) in self.domains.iter().zip(&self.after) {
            out += &row(format!("after:{d}"), r);
        }
        out
    }

    /// The matrix and the summary as a Markdown table, for a terminal or a README.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "method {}: held-out loss (rows: after training; columns: evaluated on)\n\n| stage | {} |\n|---|{}\n",
            self.method,
            self.columns.join(" | "),
            "---:|".repeat(self.columns.len())
        );
        let row = |name: &str, values: &[f32]| {
            let v: Vec<String> = values.iter().map(|x| format!("{x:.4}")).collect();
            format!("| {name} | {} |\n", v.join(" | "))
        };
        out += &row("base", &self.base);
        for (d, r) in self.domains.iter().zip(&self.after) {
            out += &row(&format!("after {d}"), r);
        }
        let s = self.summary();
        out += &format!(
            "\nmean forgetting {:.4}, backward transfer {:.4}",
            s.mean_forgetting, s.backward_transfer
        );
        if let Some(g) = s.general_change {
            out += &format!(", general loss change {g:+.4}");
        }
        out += "\n";
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_gain_and_transfer_from_a_known_matrix() {
        let domains = vec!["a".to_string(), "b".to_string()];
        let mut m = ResultMatrix::new("das", true, &domains, vec![3.0, 5.0, 6.0]).unwrap();
        m.push(vec![3.2, 2.0, 5.5]).unwrap();
        m.push(vec![3.5, 2.6, 1.5]).unwrap();
        assert!(m.push(vec![0.0; 3]).is_err());
        let s = m.summary();
        assert_eq!(s.forgetting.len(), 1);
        assert_eq!(s.forgetting[0].0, "a");
        assert!((s.forgetting[0].1 - 0.6).abs() < 1e-6);
        assert!((s.mean_forgetting - 0.6).abs() < 1e-6);
        assert!((s.backward_transfer + 0.6).abs() < 1e-6);
        assert!((s.gain[0].1 - 3.0).abs() < 1e-6 && (s.gain[1].1 - 4.5).abs() < 1e-6);
        assert!((s.general_change.unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(
            m.to_csv(),
            "stage,general,a,b\nbase,3.000000,5.000000,6.000000\n\
             after:a,3.200000,2.000000,5.500000\nafter:b,3.500000,2.600000,1.500000\n"
        );
    }
}
