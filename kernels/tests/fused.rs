//! The fused kernels against burn's own operations, values and gradients,
//! on Flex under autodiff: contiguous and transposed inputs, a gradient that
//! is shared (so it cannot be overwritten) and one that is not.

use burn::tensor::activation;
use burn::tensor::{Device, Distribution, Tensor};

fn host(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 data")
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

type Op = fn(Tensor<3>) -> Tensor<3>;

/// Forward and input gradient of `fused` and `reference` on the same input,
/// with `weight` making the upstream gradient non-uniform.
fn compare(fused: Op, reference: Op, transpose: bool, shared_grad: bool, what: &str) {
    let device = Device::flex().autodiff();
    let base = Tensor::<3>::random([3, 5, 37], Distribution::Normal(0.0, 3.0), &device);
    let weight = Tensor::<3>::random([3, 5, 37], Distribution::Normal(0.0, 1.0), &device);
    let (base, weight) = if transpose {
        (base.swap_dims(1, 2), weight.swap_dims(1, 2))
    } else {
        (base, weight)
    };
    let run = |f: Op| {
        let x = base.clone().detach().require_grad();
        let y = f(x.clone());
        // With `shared_grad` the output also feeds a second term, so its
        // gradient is a sum the kernel must not overwrite in place.
        let loss = if shared_grad {
            (y.clone() * weight.clone()).sum() + y.clone().sum()
        } else {
            (y.clone() * weight.clone()).sum()
        };
        let grads = loss.backward();
        let dx = x.grad(&grads).expect("the input has a gradient");
        (host(y.inner()), host(Tensor::from_inner(dx)))
    };
    let (y, dx) = run(fused);
    let (y_ref, dx_ref) = run(reference);
    assert_close(&y, &y_ref, 2e-6, &format!("{what} forward"));
    assert_close(&dx, &dx_ref, 2e-5, &format!("{what} gradient"));
}

#[test]
fn fused_ops_match_burns_own_values_and_gradients() {
    let cases: [(Op, Op, &str); 3] = [
        (
            |x| softmask_kernels::softmax(x, 2),
            |x| activation::softmax(x, 2),
            "softmax",
        ),
        (
            |x| softmask_kernels::log_softmax(x, 2),
            |x| activation::log_softmax(x, 2),
            "log_softmax",
        ),
        (softmask_kernels::gelu, activation::gelu, "gelu"),
    ];
    for (fused, reference, what) in cases {
        for transpose in [false, true] {
            for shared in [false, true] {
                compare(
                    fused,
                    reference,
                    transpose,
                    shared,
                    &format!("{what} t={transpose} s={shared}"),
                );
            }
        }
    }
}

#[test]
#[allow(deprecated)] // NdArray: burn's other CPU backend, which has no fused ops.
fn other_dimensions_and_devices_use_burns_operations() {
    for device in [Device::flex(), Device::ndarray()] {
        let x = Tensor::<3>::random([2, 3, 4], Distribution::Default, &device);
        for dim in 0..3 {
            let got = host(softmask_kernels::softmax(x.clone(), dim));
            let want = host(activation::softmax(x.clone(), dim));
            assert_close(&got, &want, 2e-6, "softmax by dim");
            let got = host(softmask_kernels::log_softmax(x.clone(), dim));
            let want = host(activation::log_softmax(x.clone(), dim));
            assert_close(&got, &want, 2e-6, "log_softmax by dim");
        }
    }
}

#[test]
fn empty_tensors_pass_through() {
    let device = Device::flex().autodiff();
    let x = Tensor::<3>::zeros([2, 0, 4], &device);
    assert_eq!(softmask_kernels::softmax(x.clone(), 2).dims(), [2, 0, 4]);
    assert_eq!(softmask_kernels::gelu(x).dims(), [2, 0, 4]);
}
