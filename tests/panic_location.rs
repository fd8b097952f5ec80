//! A shape panic names the user's line, not a line inside vgrad: every op is `#[track_caller]`
//! down to the check that fails. Its own test binary, because it installs a panic hook (one per
//! process) to read the location.

use rand::{rngs::StdRng, SeedableRng};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use vgrad::nn::{
    cross_entropy, huber_loss, mse_loss, smooth_l1_loss, BatchNorm1d, Ctx, LayerNorm, Linear,
    Module, Optimizer, Reduction, Sgd, SgdConfig,
};
use vgrad::{Tape, Tensor};

/// Where the last panic happened: file and line.
static LAST: Mutex<Option<(String, u32)>> = Mutex::new(None);

/// Runs `f`, which must panic, and returns the panic's file and line.
fn location_of(f: impl FnOnce()) -> (String, u32) {
    *LAST.lock().unwrap() = None;
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    assert!(r.is_err(), "expected a panic");
    LAST.lock().unwrap().take().expect("the hook saw the panic")
}

#[test]
fn shape_panics_point_at_the_callers_line() {
    // Record the location, then print as usual (libtest shows it only if the test fails).
    let print = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if let Some(loc) = info.location() {
            *LAST.lock().unwrap() = Some((loc.file().to_string(), loc.line()));
        }
        print(info);
    }));
    let t = Tape::<f32>::new();
    let a = t.leaf(Tensor::zeros(&[2, 3]));
    let b = t.leaf(Tensor::zeros(&[4, 5]));
    let mut wrong = Vec::new();
    // `line!()` in a macro is the line of the invocation, where the op call also sits.
    macro_rules! expect_here {
        ($op:literal, $e:expr) => {{
            let (file, got) = location_of(|| {
                let _ = $e;
            });
            if file != file!() || got != line!() {
                wrong.push(format!(
                    "{}: panicked at {file}:{got}, expected {}:{}",
                    $op,
                    file!(),
                    line!()
                ));
            }
        }};
    }
    expect_here!("add", a + b);
    expect_here!("mul", a * b);
    expect_here!("matmul", a.matmul(b));
    expect_here!("linear", a.linear(b, None));
    expect_here!("sum_axis", a.sum_axis(5, false));
    expect_here!("reshape", a.reshape(&[7]));
    expect_here!("softmax", a.softmax(4));
    expect_here!("narrow", a.narrow(1, 2, 5));
    // Tensors without a tape.
    let (x, y) = (Tensor::<f32>::zeros(&[2, 3]), Tensor::<f32>::zeros(&[4, 5]));
    expect_here!("Tensor::add", x.add(&y));
    expect_here!("Tensor::matmul", x.matmul(&y));
    // Losses and layers.
    expect_here!("mse_loss", mse_loss(a, b, Reduction::Mean));
    expect_here!("huber_loss", huber_loss(a, b, 1.0, Reduction::Mean));
    expect_here!("huber_loss", huber_loss(a, a, 0.0, Reduction::Mean));
    expect_here!("smooth_l1_loss", smooth_l1_loss(a, a, -1.0, Reduction::Sum));
    expect_here!("cross_entropy", cross_entropy(a, &[0, 7], Reduction::Mean));
    let mut lin = Linear::<f32>::new(5, 2, &mut StdRng::seed_from_u64(0)).unwrap();
    expect_here!("Linear", lin.forward(&mut Ctx::new(&t), a));
    let mut bn = BatchNorm1d::<f32>::new(5).unwrap();
    expect_here!("BatchNorm1d", bn.forward(&mut Ctx::new(&t), a));
    let mut ln = LayerNorm::<f32>::new(5).unwrap();
    expect_here!("LayerNorm", ln.forward(&mut Ctx::new(&t), a));
    // The optimiser step fused into backward, on a loss that is not a scalar.
    let (mut opt, ctx) = (Sgd::<f32>::new(SgdConfig::default()).unwrap(), Ctx::new(&t));
    expect_here!("backward_step", opt.backward_step(&mut lin, &ctx, a));
    let _ = panic::take_hook();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
