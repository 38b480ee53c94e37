//! One DAS training step on a real BERT, timed: MLM (15% of the tokens
//! masked) plus DAS's contrastive term (two dropout views and an
//! importance-gated view of the original tokens), then an update-masked
//! AdamW step. Also the plain update-masked MLM step, and the MLM-proxy
//! importance pass (gate gradients of the MLM loss). Prints the median and
//! minimum wall time of each as JSON lines; `tools/bench/compare_das.py`
//! runs it beside `tools/bench/torch_das.py` (the same in PyTorch).
//!
//! ```text
//! tools/fetch_minilm.sh
//! cargo run --release --example bench_das -- [--model .cache/all-MiniLM-L6-v2] [--iters 5] [--batch 8] [--seq 128]
//!     [--device flex] [--ops das_step,mlm_step,importance]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use softmask::continual::{
    BertMlmCollate, Collate, ContinualModel, OptimizerKind, contrastive_loss,
};
use softmask::{
    Accumulation, Gates, GradientSign, Importance, ImportanceEstimator, MaskMode, MlmLoss, Result,
    SoftMaskBert, SoftMaskable, SoftMaskedOptimizer, open_device,
};

fn main() -> ExitCode {
    let mut model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/all-MiniLM-L6-v2");
    let (mut iters, mut batch, mut seq, mut device) =
        (5usize, 8usize, 128usize, "flex".to_string());
    let mut ops = vec![
        "das_step".to_string(),
        "mlm_step".into(),
        "importance".into(),
    ];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(v) = args.next() else {
            eprintln!("{flag} needs a value");
            return ExitCode::from(2);
        };
        let parsed = match flag.as_str() {
            "--model" => {
                model = v.into();
                Ok(())
            }
            "--iters" => v.parse().map(|x| iters = x).map_err(|e| e.to_string()),
            "--batch" => v.parse().map(|x| batch = x).map_err(|e| e.to_string()),
            "--seq" => v.parse().map(|x| seq = x).map_err(|e| e.to_string()),
            "--device" => {
                device = v;
                Ok(())
            }
            "--ops" => {
                ops = v.split(',').map(str::to_string).collect();
                Ok(())
            }
            _ => Err("unknown argument".into()),
        };
        if let Err(e) = parsed {
            eprintln!("{flag}: {e}");
            return ExitCode::from(2);
        }
    }
    match run(&model, iters, batch, seq, &device, &ops) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    folder: &std::path::Path,
    iters: usize,
    batch: usize,
    seq: usize,
    device: &str,
    ops: &[String],
) -> Result<()> {
    const OPS: [&str; 3] = ["das_step", "mlm_step", "importance"];
    if let Some(bad) = ops.iter().find(|o| !OPS.contains(&o.as_str())) {
        return Err(softmask::Error::InvalidConfig(format!(
            "--ops: {bad:?} is not one of {OPS:?}"
        )));
    }
    let dev = open_device(device)?.autodiff();
    dev.seed(0);
    let (mut model, config) = SoftMaskBert::from_pretrained(folder, &dev)?;
    // Token ids drawn from the ordinary vocabulary (past the special tokens),
    // a [CLS] first: the same rows on both sides of the comparison.
    let mut rng = StdRng::seed_from_u64(0);
    let rows: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            std::iter::once(101)
                .chain((1..seq).map(|_| rng.random_range(1000..config.vocab_size as u32)))
                .collect()
        })
        .collect();
    let collate = BertMlmCollate::new(103, 0, config.vocab_size, vec![0, 100, 101, 102, 103])?;
    // A fixed importance in [0, 1).
    let layout = model.gate_layout();
    let values = layout
        .specs()
        .iter()
        .map(|s| (0..s.numel()).map(|i| (i * 7 % 11) as f32 / 11.0).collect())
        .collect();
    let importance = Importance::new(&layout, values)?;
    let gates = Gates::from_tensors(
        importance
            .gates()
            .iter()
            .map(|g| {
                Tensor::<2>::from_data(TensorData::new(g.values.clone(), [g.rows, g.units]), &dev)
            })
            .collect(),
        &layout,
    )?;
    let adamw = OptimizerKind::AdamW { weight_decay: 0.01 };
    let mut optim = SoftMaskedOptimizer::new(adamw.init()?, &importance, &model, MaskMode::Update)?;
    let mut estimator =
        ImportanceEstimator::new(layout.clone(), Accumulation::PerBatch, GradientSign::Signed)?;
    let mut times: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..iters + 1 {
        for (op, t) in times.iter_mut().enumerate() {
            if !ops.iter().any(|o| o == OPS[op]) {
                continue;
            }
            let b = collate.collate(&rows, i as u64, &dev)?;
            let start = Instant::now();
            if op == 2 {
                // The MLM-proxy importance pass: gate gradients only.
                estimator.step(&model, &b, &MlmLoss)?;
                if i > 0 {
                    t.push(start.elapsed().as_secs_f64() * 1e3);
                }
                continue;
            }
            let mut loss = model.loss(&b, None)?;
            if op == 0 {
                let z1 = model.pooled(&b, None)?;
                let z2 = model.pooled(&b, None)?;
                let z3 = model.pooled(&b, Some(&gates))?;
                loss = loss + contrastive_loss(z1, z2, z3, 0.05)?;
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optim.step(1e-5, &mut model, grads)?;
            if i > 0 {
                t.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    for (op, mut t) in OPS.iter().zip(times) {
        if t.is_empty() {
            continue;
        }
        t.sort_by(f64::total_cmp);
        println!(
            "{{\"side\": \"rust\", \"op\": \"{op}\", \"device\": \"{device}\", \"iters\": {iters}, \"median_ms\": {:.1}, \"min_ms\": {:.1}}}",
            t[t.len() / 2],
            t[0]
        );
    }
    Ok(())
}
