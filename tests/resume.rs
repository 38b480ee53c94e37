//! Resume after SIGKILL: a continual run killed at random points, then
//! resumed, ends with exactly the results and weights of a run never
//! interrupted.
//!
//! Alone in its test binary: burn's CPU kernels share one rayon pool per
//! process, and tests running beside this one would change how reductions
//! split, so even two uninterrupted runs could differ in the last bit.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use softmask::continual::*;
use softmask::*;

/// The run the resume test kills: DAS with EWC on, a checkpoint every step.
fn resume_config() -> MethodConfig {
    let mut c = quick("das");
    c.steps_per_domain = 5;
    c.ewc_lambda = 10.0;
    c.checkpoint_every = 1;
    c
}

const CHILD_ENV: &str = "SOFTMASK_CONTINUAL_CHILD_OUT";

/// Steps a run has logged so far (across restarts).
fn logged_steps(out: &Path) -> usize {
    std::fs::read_to_string(out.join("log.jsonl"))
        .map(|log| {
            log.lines()
                .filter(|l| l.contains("\"event\":\"step\""))
                .count()
        })
        .unwrap_or(0)
}

/// The child process of the resume test: runs (or resumes) into the folder
/// the environment names, until the parent kills it.
#[test]
#[ignore = "run by resume_after_sigkill_ends_exactly_as_an_uninterrupted_run"]
fn child_run() {
    let Ok(out) = std::env::var(CHILD_ENV) else {
        return;
    };
    let out = PathBuf::from(out);
    let resume = out.join("checkpoints").exists();
    run(resume_config(), &out, resume).unwrap();
}

#[test]
fn resume_after_sigkill_ends_exactly_as_an_uninterrupted_run() {
    let reference_dir = temp_dir("resume-ref");
    let started = std::time::Instant::now();
    let reference = run(resume_config(), &reference_dir, false).unwrap();
    let took = started.elapsed();
    let weights = reference.model.named_tensors().unwrap();

    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut resumed_mid_run = 0;
    for trial in 0..10 {
        let out = temp_dir(&format!("resume-{trial}"));
        // Three kills at random points of a child's run: after a random
        // number of further steps (read from its log), plus a random delay
        // that lands anywhere in the next step. Each next child resumes from
        // what the last one left.
        let mut mid_run = false;
        for _ in 0..3 {
            let steps_before = logged_steps(&out);
            let target = steps_before + rng.random_range(1..4usize);
            let mut child = std::process::Command::new(&exe)
                .args(["child_run", "--exact", "--ignored", "--test-threads=1"])
                .env(CHILD_ENV, &out)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let deadline =
                std::time::Instant::now() + took * 20 + std::time::Duration::from_secs(5);
            while logged_steps(&out) < target
                && child.try_wait().unwrap().is_none()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            std::thread::sleep(took.mul_f64(rng.random_range(0.0..0.1)));
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            let left: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            mid_run |= left
                .iter()
                .any(|n| !n.starts_with('.') && n != "002-0000000");
        }
        resumed_mid_run += usize::from(mid_run);
        let resume = out.join("checkpoints").exists();
        let outcome = match run(resume_config(), &out, resume) {
            Ok(o) => o,
            // The last child finished the run: resuming it is refused, as it
            // holds a finished run; its results are the ones to compare.
            Err(Error::InvalidConfig(m)) if m.contains("holds the results") => {
                run(resume_config(), &out, true).unwrap()
            }
            Err(e) => panic!("trial {trial}: {e}"),
        };
        assert_eq!(outcome.results, reference.results, "trial {trial}");
        assert_eq!(
            outcome.model.named_tensors().unwrap(),
            weights,
            "trial {trial}"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
    assert!(
        resumed_mid_run >= 3,
        "only {resumed_mid_run} of 10 trials were killed mid-run"
    );
    std::fs::remove_dir_all(&reference_dir).unwrap();
}
