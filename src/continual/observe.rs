//! Observe: hooks into the continual loop, and the built-in observers (a
//! JSONL log and a progress line).
//!
//! Observers see the loop; they never change training.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::importance::Importance;

/// One optimizer step, as observers see it.
#[derive(Debug, Clone, Serialize)]
pub struct StepEvent {
    /// The domain being trained.
    pub domain: String,
    /// Its index in the sequence.
    pub domain_index: usize,
    /// Steps taken in this domain (1 after the first).
    pub step: usize,
    /// Steps per domain.
    pub steps: usize,
    /// The total loss of the step (objective, contrastive term, EWC penalty).
    pub loss: f32,
    /// The learning rate used.
    pub lr: f64,
    /// Real tokens in the batch.
    pub tokens: usize,
    /// Wall time of the step, in seconds.
    pub seconds: f64,
}

/// Hooks at the points of the continual loop, as Avalanche's plugins. Every
/// method has an empty default.
pub trait Observer {
    /// A domain starts (or resumes at `step`).
    fn on_domain_start(&mut self, _domain: &str, _index: usize, _domains: usize, _step: usize) {}
    /// An optimizer step was taken.
    fn on_step(&mut self, _event: &StepEvent) {}
    /// An importance was estimated and saved under `name`.
    fn on_importance(&mut self, _name: &str, _importance: &Importance) {}
    /// Held-out losses after training `after` (`"base"` for the base model).
    fn on_eval(&mut self, _after: &str, _columns: &[String], _losses: &[f32]) {}
    /// A domain is finished: trained, its importance saved, evaluated.
    fn on_domain_end(&mut self, _domain: &str) {}
    /// A checkpoint was written.
    fn on_checkpoint(&mut self, _path: &Path) {}
}

/// Appends one JSON object per event to a file (`log.jsonl` of a run).
#[derive(Debug)]
pub struct JsonlLog {
    file: File,
}

impl JsonlLog {
    /// Opens (appending to) `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<JsonlLog> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(JsonlLog { file })
    }

    fn write(&mut self, value: serde_json::Value) {
        // A log line that cannot be written must not stop training.
        let _ = writeln!(self.file, "{value}");
    }
}

impl Observer for JsonlLog {
    fn on_domain_start(&mut self, domain: &str, index: usize, domains: usize, step: usize) {
        self.write(serde_json::json!({"event": "domain_start", "domain": domain, "index": index, "domains": domains, "step": step}));
    }
    fn on_step(&mut self, e: &StepEvent) {
        self.write(serde_json::json!({"event": "step", "data": e}));
    }
    fn on_importance(&mut self, name: &str, importance: &Importance) {
        let usage: Vec<(String, f32)> = importance.usage();
        self.write(serde_json::json!({"event": "importance", "name": name, "mean_by_gate": usage}));
    }
    fn on_eval(&mut self, after: &str, columns: &[String], losses: &[f32]) {
        self.write(serde_json::json!({"event": "eval", "after": after, "columns": columns, "losses": losses}));
    }
    fn on_domain_end(&mut self, domain: &str) {
        self.write(serde_json::json!({"event": "domain_end", "domain": domain}));
    }
    fn on_checkpoint(&mut self, path: &Path) {
        self.write(serde_json::json!({"event": "checkpoint", "path": path}));
    }
}

/// A progress line on standard error: domain, step, loss, learning rate,
/// tokens per second and the time left in the domain. Redrawn in place on a
/// terminal; elsewhere one line every `every` steps.
#[derive(Debug)]
pub struct Progress {
    terminal: bool,
    every: usize,
    started: Option<Instant>,
    tokens: usize,
    first_step: usize,
}

impl Progress {
    /// A progress observer; `every` applies when standard error is not a terminal.
    pub fn new(every: usize) -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            every: every.max(1),
            started: None,
            tokens: 0,
            first_step: 0,
        }
    }
}

impl Observer for Progress {
    fn on_domain_start(&mut self, domain: &str, index: usize, domains: usize, step: usize) {
        eprintln!("domain {}/{domains}: {domain}", index + 1);
        self.started = Some(Instant::now());
        self.tokens = 0;
        self.first_step = step;
    }

    fn on_step(&mut self, e: &StepEvent) {
        self.tokens += e.tokens;
        let elapsed = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let done = e.step - self.first_step;
        let eta = elapsed / done.max(1) as f64 * (e.steps - e.step) as f64;
        let line = format!(
            "  step {}/{} loss {:.4} lr {:.2e} {:.0} tok/s ETA {:.0}s",
            e.step,
            e.steps,
            e.loss,
            e.lr,
            self.tokens as f64 / elapsed.max(1e-9),
            eta
        );
        if self.terminal {
            eprint!("\r{line}\x1b[K");
            if e.step == e.steps {
                eprintln!();
            }
        } else if e.step.is_multiple_of(self.every) || e.step == e.steps {
            eprintln!("{line}");
        }
    }

    fn on_eval(&mut self, after: &str, columns: &[String], losses: &[f32]) {
        let parts: Vec<String> = columns
            .iter()
            .zip(losses)
            .map(|(c, l)| format!("{c} {l:.4}"))
            .collect();
        eprintln!("  held-out loss after {after}: {}", parts.join(", "));
    }
}
