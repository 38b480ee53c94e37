//! Observe: hooks into the continual loop, and the built-in observers (a
//! JSONL log and progress bars).
//!
//! Observers see the loop; they never change training (methods that do are
//! [`Plugin`](super::Plugin)s).

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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

/// Read-only hooks at the points of the continual loop. Every method has an
/// empty default.
pub trait Observer {
    /// A run resumes from the checkpoint `path`, at `step` of the domain
    /// `domain` (index `index`; the name `"(done)"` when every domain is).
    fn on_resume(&mut self, _path: &Path, _domain: &str, _index: usize, _step: usize) {}
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
    /// A pass over batches outside training (`"general importance"`,
    /// `"domain importance"`, `"evaluation"`) has done `done` of `total`
    /// (0 when it starts).
    fn on_pass(&mut self, _what: &str, _done: usize, _total: usize) {}
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
    fn on_resume(&mut self, path: &Path, domain: &str, index: usize, step: usize) {
        self.write(serde_json::json!({"event": "resume", "checkpoint": path, "domain": domain, "index": index, "step": step}));
    }
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

/// Progress on standard error. On a terminal, `indicatif` bars with rate and
/// time left: one per domain's training (loss, learning rate, tokens per
/// second) and one per importance or evaluation pass. Elsewhere (CI logs,
/// files), plain lines: one every `every` steps and one per finished pass.
pub struct Progress {
    /// Where plain lines go; `None` draws bars on the terminal.
    plain: Option<Box<dyn Write + Send>>,
    every: usize,
    bar: Option<ProgressBar>,
    pass: Option<(String, ProgressBar, Instant)>,
    started: Option<Instant>,
    tokens: usize,
    first_step: usize,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("terminal", &self.plain.is_none())
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// Bars when standard error is a terminal, else plain lines every
    /// `every` steps on standard error.
    pub fn new(every: usize) -> Progress {
        let plain: Option<Box<dyn Write + Send>> = if std::io::stderr().is_terminal() {
            None
        } else {
            Some(Box::new(std::io::stderr()))
        };
        Progress::with_sink(plain, every)
    }

    /// Plain lines into `sink`, one every `every` steps, whatever the terminal.
    ///
    /// # Example
    ///
    /// ```
    /// use softmask::continual::{Observer, Progress, StepEvent};
    ///
    /// let path = std::env::temp_dir().join(format!("progress-{}.txt", std::process::id()));
    /// {
    ///     let mut p = Progress::lines(Box::new(std::fs::File::create(&path)?), 2);
    ///     p.on_domain_start("kernel", 0, 2, 0);
    ///     p.on_pass("evaluation", 3, 3);
    /// }
    /// let text = std::fs::read_to_string(&path)?;
    /// assert!(text.starts_with("domain 1/2: kernel\n  evaluation: 3 batches in "));
    /// # std::fs::remove_file(path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lines(sink: Box<dyn Write + Send>, every: usize) -> Progress {
        Progress::with_sink(Some(sink), every)
    }

    fn with_sink(plain: Option<Box<dyn Write + Send>>, every: usize) -> Progress {
        Progress {
            plain,
            every: every.max(1),
            bar: None,
            pass: None,
            started: None,
            tokens: 0,
            first_step: 0,
        }
    }

    /// A line above the bars (or a plain line).
    fn say(&mut self, line: &str) {
        match (&mut self.plain, &self.bar) {
            (Some(w), _) => {
                let _ = writeln!(w, "{line}");
            }
            (None, Some(bar)) if !bar.is_finished() => bar.println(line),
            (None, _) => eprintln!("{line}"),
        }
    }

    fn bar(len: usize, template: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        if let Some((_, bar, _)) = self.pass.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn on_resume(&mut self, path: &Path, domain: &str, index: usize, step: usize) {
        self.say(&format!(
            "resumed from {}: domain {} ({domain}), step {step}",
            path.display(),
            index + 1
        ));
    }

    fn on_domain_start(&mut self, domain: &str, index: usize, domains: usize, step: usize) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        self.say(&format!("domain {}/{domains}: {domain}", index + 1));
        self.started = Some(Instant::now());
        self.tokens = 0;
        self.first_step = step;
    }

    fn on_step(&mut self, e: &StepEvent) {
        self.tokens += e.tokens;
        let elapsed = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let rate = self.tokens as f64 / elapsed.max(1e-9);
        if self.plain.is_none() {
            let first = self.first_step as u64;
            let bar = self.bar.get_or_insert_with(|| {
                let bar = Progress::bar(
                    e.steps,
                    "  {prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
                );
                bar.set_prefix(e.domain.clone());
                bar.set_position(first);
                bar.reset_eta();
                bar
            });
            bar.set_position(e.step as u64);
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} {rate:.0} tok/s",
                e.loss, e.lr
            ));
            if e.step == e.steps {
                bar.finish();
                self.bar = None;
            }
            return;
        }
        if e.step.is_multiple_of(self.every) || e.step == e.steps {
            let done = e.step - self.first_step;
            let eta = elapsed / done.max(1) as f64 * (e.steps - e.step) as f64;
            self.say(&format!(
                "  step {}/{} loss {:.4} lr {:.2e} {rate:.0} tok/s ETA {eta:.0}s",
                e.step, e.steps, e.loss, e.lr
            ));
        }
    }

    fn on_pass(&mut self, what: &str, done: usize, total: usize) {
        if self.pass.as_ref().is_none_or(|(w, _, _)| w != what) {
            if let Some((_, bar, _)) = self.pass.take() {
                bar.finish_and_clear();
            }
            let bar = if self.plain.is_none() {
                let bar = Progress::bar(
                    total,
                    "  {prefix} [{bar:30}] {pos}/{len} [{elapsed_precise}<{eta_precise}]",
                );
                bar.set_prefix(what.to_string());
                bar
            } else {
                ProgressBar::hidden()
            };
            self.pass = Some((what.to_string(), bar, Instant::now()));
        }
        if let Some((_, bar, _)) = &self.pass {
            bar.set_position(done as u64);
        }
        if done >= total
            && let Some((_, bar, started)) = self.pass.take()
        {
            bar.finish_and_clear();
            self.say(&format!(
                "  {what}: {total} batches in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
    }

    fn on_eval(&mut self, after: &str, columns: &[String], losses: &[f32]) {
        let parts: Vec<String> = columns
            .iter()
            .zip(losses)
            .map(|(c, l)| format!("{c} {l:.4}"))
            .collect();
        self.say(&format!(
            "  held-out loss after {after}: {}",
            parts.join(", ")
        ));
    }
}
