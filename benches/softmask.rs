//! `cargo bench`: every workload × operation × device.
//!
//! Workloads (see `workloads.rs`): the notebook's sizes and a wide one; each
//! with one importance batch (KL to a duplicate, gate gradients only), a
//! training step with the gradient soft-mask and Adam, the same with update
//! masking, and a plain unmasked step. Side by side with PyTorch:
//! `python3 tools/bench/compare.py`.

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/workloads.rs"]
mod workloads;

use workloads::{OPS, WORKLOADS, devices};

fn bench(c: &mut Criterion) {
    for w in WORKLOADS {
        let mut group = c.benchmark_group(w.name);
        if w.name == "wide" {
            group.sample_size(10);
        }
        for (dev_name, device) in devices() {
            for op in OPS {
                let mut setup = match w.setup(op, &device) {
                    Ok(s) => s,
                    Err(e) => panic!("setting up {}/{dev_name}/{op}: {e}", w.name),
                };
                group.bench_function(format!("{dev_name}/{op}"), |b| {
                    b.iter(|| {
                        if let Err(e) = setup.run(op) {
                            panic!("{}/{dev_name}/{op}: {e}", w.name);
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
