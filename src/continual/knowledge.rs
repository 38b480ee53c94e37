//! Knowledge probes in the loop: every item of a
//! [`ProbeSet`] scored for the base model and
//! after every domain, each choice by its log-likelihood after the prompt;
//! accuracy, the mean margin of the answer, and which of the items the base
//! model knew are lost, in `knowledge.json`, `knowledge.csv`,
//! `knowledge.md` and `knowledge.svg` of the run folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::causal::ContinuationScorer;
use super::plot::stage_table_svg;
use super::plugin::{DomainEnd, DomainStart, Plugin};
use crate::data::probes::{ProbeSet, TokenizedProbe};
use crate::error::{Error, Result};
use crate::io::write_atomic;

/// The probes' result after one stage (the base model, or a domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeRow {
    /// `base`, or the domain just trained.
    pub after: String,
    /// The fraction of items whose answer scores highest (a tie goes to the
    /// earlier choice, as `argmax` does).
    pub accuracy: f32,
    /// The mean over items of the answer's log-likelihood minus the best
    /// other choice's (positive when known).
    pub mean_margin: f32,
    /// Of the items the base model answers right, the fraction this stage
    /// answers wrong: knowledge forgotten.
    pub forgotten: f32,
    /// Per item, in set order: answered right.
    pub correct: Vec<bool>,
}

/// Evaluates a [`ProbeSet`] as a [`Plugin`] after every domain (and, by
/// [`evaluate`](Self::evaluate), for the base model: call it before the
/// run), writing the rows so far to the run folder each time. A resumed run
/// takes the rows back with [`resume`](Self::resume) and evaluates again the
/// stages its checkpoint had not finished, so it reports what an
/// uninterrupted run does.
#[derive(Debug, Clone)]
pub struct KnowledgeProbes {
    ids: Vec<String>,
    categories: Vec<String>,
    probes: Vec<TokenizedProbe>,
    out: PathBuf,
    rows: Vec<KnowledgeRow>,
}

/// What `knowledge.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    items: Vec<String>,
    categories: Vec<String>,
    rows: Vec<KnowledgeRow>,
}

const STATE: &str = "knowledge.json";

impl KnowledgeProbes {
    /// Probes `set` (tokenized as `probes`, one per item, in order),
    /// writing into the run folder `out`.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] when `probes` are not one per item with
    /// the items' numbers of choices and answers.
    pub fn new(set: &ProbeSet, probes: Vec<TokenizedProbe>, out: impl AsRef<Path>) -> Result<Self> {
        let fits = probes.len() == set.items().len()
            && set
                .items()
                .iter()
                .zip(&probes)
                .all(|(i, p)| i.choices.len() == p.choices.len() && i.answer == p.answer);
        if !fits {
            return Err(Error::LayoutMismatch(
                "the tokenized probes are not those of the probe set".into(),
            ));
        }
        Ok(KnowledgeProbes {
            ids: set.items().iter().map(|i| i.id.clone()).collect(),
            categories: set.items().iter().map(|i| i.category.clone()).collect(),
            probes,
            out: out.as_ref().to_path_buf(),
            rows: Vec::new(),
        })
    }

    /// The same probes with the rows of the run folder's `knowledge.json`,
    /// for a resumed run (none when the file does not exist).
    ///
    /// # Errors
    ///
    /// [`Error::CorruptFile`] for a report that does not parse or is of
    /// other items.
    pub fn resume(mut self) -> Result<Self> {
        let path = self.out.join(STATE);
        if !path.exists() {
            return Ok(self);
        }
        let corrupt = |reason: String| Error::CorruptFile {
            path: path.clone(),
            reason,
        };
        let report: Report = serde_json::from_slice(&crate::io::read(&path)?)
            .map_err(|e| corrupt(format!("not a knowledge report ({e})")))?;
        if report.items != self.ids
            || report
                .rows
                .iter()
                .any(|r| r.correct.len() != self.ids.len())
        {
            return Err(corrupt("its items are not this probe set's".into()));
        }
        self.rows = report.rows;
        Ok(self)
    }

    /// The rows so far: the base model's first.
    pub fn rows(&self) -> &[KnowledgeRow] {
        &self.rows
    }

    /// Scores every item with `model`, appends the row `after` and rewrites
    /// the report files.
    ///
    /// # Errors
    ///
    /// The model's scoring errors; [`Error::Io`] when a file cannot be written.
    pub fn evaluate<M: ContinuationScorer>(
        &mut self,
        model: &M,
        after: &str,
    ) -> Result<&KnowledgeRow> {
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = self
            .probes
            .iter()
            .flat_map(|p| p.choices.iter().map(|c| (p.context.clone(), c.clone())))
            .collect();
        let scores = model.continuation_logprobs(&pairs)?;
        if scores.len() != pairs.len() {
            return Err(Error::ShapeMismatch {
                what: "continuation scores".into(),
                expected: pairs.len().to_string(),
                actual: scores.len().to_string(),
            });
        }
        let mut at = 0;
        let (mut correct, mut margins) = (Vec::new(), Vec::new());
        for p in &self.probes {
            let s = &scores[at..at + p.choices.len()];
            at += p.choices.len();
            let best_other = s
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != p.answer)
                .map(|(_, v)| *v)
                .fold(f32::NEG_INFINITY, f32::max);
            margins.push(s[p.answer] - best_other);
            // The highest score wins; a tie goes to the earlier choice.
            let earlier = s[..p.answer]
                .iter()
                .fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            correct.push(s[p.answer] > earlier && s[p.answer] >= best_other);
        }
        let n = correct.len().max(1) as f32;
        let known: Vec<usize> = match self.rows.first() {
            Some(base) => (0..base.correct.len())
                .filter(|&i| base.correct[i])
                .collect(),
            None => (0..correct.len()).filter(|&i| correct[i]).collect(),
        };
        let lost = known.iter().filter(|&&i| !correct[i]).count();
        self.rows.push(KnowledgeRow {
            after: after.to_string(),
            accuracy: correct.iter().filter(|&&c| c).count() as f32 / n,
            mean_margin: margins.iter().sum::<f32>() / n,
            forgotten: lost as f32 / known.len().max(1) as f32,
            correct,
        });
        self.write()?;
        let row = self.rows.len() - 1;
        Ok(&self.rows[row])
    }

    /// The categories, sorted, each once.
    fn category_names(&self) -> Vec<String> {
        let mut cats = self.categories.clone();
        cats.sort();
        cats.dedup();
        cats
    }

    /// `row`'s accuracy within each of [`category_names`](Self::category_names).
    fn category_accuracy(&self, row: &KnowledgeRow) -> Vec<f32> {
        self.category_names()
            .iter()
            .map(|c| {
                let of: Vec<bool> = (0..row.correct.len())
                    .filter(|&i| &self.categories[i] == c)
                    .map(|i| row.correct[i])
                    .collect();
                of.iter().filter(|&&x| x).count() as f32 / of.len().max(1) as f32
            })
            .collect()
    }

    /// The rows as a Markdown table, with per-category accuracy.
    pub fn to_table(&self) -> String {
        let cats = self.category_names();
        let mut out = String::from("| after | accuracy | mean margin | forgotten |");
        for c in &cats {
            out.push_str(&format!(" {c} |"));
        }
        out.push_str("\n|---|---:|---:|---:|");
        out.push_str(&"---:|".repeat(cats.len()));
        for row in &self.rows {
            out.push_str(&format!(
                "\n| {} | {:.3} | {:.3} | {:.3} |",
                row.after, row.accuracy, row.mean_margin, row.forgotten
            ));
            for a in self.category_accuracy(row) {
                out.push_str(&format!(" {a:.3} |"));
            }
        }
        out.push('\n');
        out
    }

    /// The rows as an SVG table: accuracy overall and per category after
    /// every stage, red where it fell below the base model's.
    pub fn to_svg(&self) -> String {
        let columns: Vec<String> = std::iter::once("accuracy".to_string())
            .chain(self.category_names())
            .collect();
        let rows: Vec<(String, Vec<f32>)> = self
            .rows
            .iter()
            .map(|r| {
                let values = std::iter::once(r.accuracy)
                    .chain(self.category_accuracy(r))
                    .collect();
                (r.after.clone(), values)
            })
            .collect();
        stage_table_svg(
            "knowledge probes: accuracy (red: below the base model's)",
            &columns,
            &rows,
            -0.5,
        )
    }

    /// The rows as CSV: `after,accuracy,mean_margin,forgotten`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("after,accuracy,mean_margin,forgotten\n");
        for r in &self.rows {
            out.push_str(&format!(
                "{},{},{},{}\n",
                r.after, r.accuracy, r.mean_margin, r.forgotten
            ));
        }
        out
    }

    fn report(&self) -> Report {
        Report {
            items: self.ids.clone(),
            categories: self.categories.clone(),
            rows: self.rows.clone(),
        }
    }

    /// Writes `knowledge.json`, `.csv` and `.md` into the run folder.
    fn write(&self) -> Result<()> {
        std::fs::create_dir_all(&self.out).map_err(|source| Error::Io {
            path: self.out.clone(),
            source,
        })?;
        write_atomic(&self.out.join(STATE), &self.json()?)?;
        write_atomic(&self.out.join("knowledge.csv"), self.to_csv().as_bytes())?;
        write_atomic(&self.out.join("knowledge.svg"), self.to_svg().as_bytes())?;
        write_atomic(&self.out.join("knowledge.md"), self.to_table().as_bytes())
    }

    fn json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(&self.report()).map_err(|e| Error::Serialization {
            what: "the knowledge probes' report".into(),
            reason: e.to_string(),
        })
    }
}

impl<M: ContinuationScorer, B> Plugin<M, B> for KnowledgeProbes {
    fn name(&self) -> &str {
        "knowledge"
    }

    /// Drops the rows of stages past the base and the finished domains: a
    /// resumed run evaluates those again.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the rows of the base model and the
    /// finished domains are not all there (the base was not evaluated
    /// before the run, or probes were added to a run resumed midway).
    fn before_domain(&mut self, start: &DomainStart<'_>) -> Result<()> {
        if self.rows.len() < start.index + 1 {
            return Err(Error::InvalidConfig(format!(
                "the knowledge probes have {} row(s) at domain {}: evaluate the base model \
                 before the run, and resume only runs probed from their start",
                self.rows.len(),
                start.index
            )));
        }
        self.rows.truncate(start.index + 1);
        Ok(())
    }

    fn after_domain(&mut self, model: &M, end: &DomainEnd<'_, B>) -> Result<()> {
        self.evaluate(model, &end.domain.name).map(|_| ())
    }
}
