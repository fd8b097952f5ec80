//! The engine under attack: reset and mixed tapes, anomalies in generated networks, hooks that
//! change the hook list while they run, a second sweep through a consumed graph, and the names
//! panics give.

use rand::{rngs::StdRng, RngExt, SeedableRng};
use std::cell::RefCell;
use std::rc::Rc;
use vgrad::nn::{
    Activation, Ctx, LayerNorm, Linear, Module, Optimizer, Sequential, Sgd, SgdConfig,
};
use vgrad::{Phase, Tape, Tensor};

thread_local! {
    static EXPECTING_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The message of the panic `f` raises, or `None` when it returns. The expected panic is not
/// printed (other threads' panics still are).
pub(crate) fn panic_message(f: impl FnOnce()) -> Option<String> {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !EXPECTING_PANIC.with(|e| e.get()) {
                default(info);
            }
        }));
    });
    EXPECTING_PANIC.with(|e| e.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    EXPECTING_PANIC.with(|e| e.set(false));
    let err = result.err()?;
    Some(if let Some(s) = err.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = err.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "<non-text panic>".into()
    })
}

/// Item 1: a reset (or new) tape is never answered with an old step's gradients. The borrow
/// checker refuses the old pattern (a `compile_fail` doctest on `Gradients`); here, generated
/// steps on one reset tape and on fresh tapes at a reused address each get their own numbers.
#[test]
fn reset_and_new_tapes_get_their_own_gradients() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut tape = Tape::<f64>::new();
    for step in 0..200 {
        let x0: f64 = rng.random_range(-3.0..3.0);
        let depth = rng.random_range(1..6);
        let check = |tape: &Tape<f64>| {
            let x = tape.leaf(Tensor::scalar(x0));
            // Padding nodes move x to another index on some steps.
            for _ in 0..(step % 3) {
                let _ = tape.constant(Tensor::scalar(0.0));
            }
            let mut y = x;
            for _ in 0..depth {
                y = y * x;
            }
            // d/dx x^(depth+1) = (depth+1)·x^depth
            let want = (depth + 1) as f64 * x0.powi(depth);
            let g = y.backward().wrt(x).expect("a gradient").item();
            assert!(
                (g - want).abs() <= 1e-9 * want.abs().max(1.0),
                "step {step}: {g} vs {want}"
            );
        };
        if step % 2 == 0 {
            tape.reset();
            check(&tape);
        } else {
            check(&Tape::new());
        }
    }
}

/// Item 1, the other half: gradients of one live tape asked about a variable of another.
#[test]
fn gradients_refuse_a_variable_of_another_live_tape() {
    for seed in 0..20 {
        let a = Tape::<f32>::new();
        let b = Tape::<f32>::new();
        for _ in 0..seed % 4 {
            let _ = b.constant(Tensor::scalar(0.0));
        }
        let xa = a.leaf(Tensor::scalar(1.0));
        let xb = b.leaf(Tensor::scalar(2.0));
        let ga = (xa * xa).backward();
        let msg = panic_message(|| {
            let _ = ga.wrt(xb);
        })
        .expect("wrt with a foreign variable panics");
        assert!(
            msg.contains("wrt") && msg.contains("different tape"),
            "{msg}"
        );
    }
}

/// A stack of `depth` Linear(4, 4) + activation pairs, with every weight finite.
fn stack(depth: usize, act: Activation<f32>, rng: &mut StdRng) -> Sequential<f32> {
    let mut s = Sequential::new();
    for _ in 0..depth {
        s = s.push(Linear::new(4, 4, rng).unwrap()).push(act);
    }
    s
}

/// Item 2: a NaN planted in the weight or bias of a generated layer is reported under that
/// parameter's dotted name, whatever the depth and the activation around it.
#[test]
fn anomaly_names_the_poisoned_parameter() {
    let mut rng = StdRng::seed_from_u64(2);
    let acts = [Activation::Sigmoid, Activation::Relu, Activation::Tanh];
    for case in 0..60 {
        let depth = rng.random_range(1..8);
        let k = rng.random_range(0..depth);
        let in_weight = case % 2 == 0;
        let bad = if case % 5 == 0 {
            f32::INFINITY
        } else {
            f32::NAN
        };
        let mut net = Sequential::new();
        for layer in 0..depth {
            let mut w: Vec<f32> = (0..16).map(|_| rng.random_range(-0.5..0.5)).collect();
            let mut b: Vec<f32> = (0..4).map(|_| rng.random_range(-0.5..0.5)).collect();
            if layer == k {
                if in_weight {
                    w[rng.random_range(0..16)] = bad;
                } else {
                    b[rng.random_range(0..4)] = bad;
                }
            }
            let w = Tensor::from_vec(w, &[4, 4]).unwrap();
            let b = Tensor::from_vec(b, &[4]).unwrap();
            net = net
                .push(Linear::from_tensors(w, Some(b)).unwrap())
                .push(acts[case % 3]);
        }
        let name = format!("{}.{}", 2 * k, if in_weight { "weight" } else { "bias" });
        let tape = Tape::new();
        tape.set_detect_anomaly(true);
        let mut ctx = Ctx::new(&tape);
        let _ = net.forward(&mut ctx, tape.constant(Tensor::ones(&[3, 4])));
        let a = tape.anomaly().expect("an anomaly");
        assert_eq!(a.phase, Phase::Forward, "case {case}");
        assert_eq!(a.op, "leaf", "case {case}: {a}");
        assert_eq!(a.label.as_deref(), Some(name.as_str()), "case {case}: {a}");
        assert!(
            a.to_string().contains(&format!("parameter `{name}`")),
            "{a}"
        );
    }
}

/// Item 2: an overflow inside a LayerNorm at a generated position (its scale times a
/// normalised value past f32's range) is reported in that layer,
/// not in the layer whose output was labelled last.
#[test]
fn anomaly_names_the_layer_whose_forward_was_running() {
    let mut rng = StdRng::seed_from_u64(3);
    for case in 0..40 {
        let before = rng.random_range(0..4);
        let mut net = Sequential::<f32>::new();
        for _ in 0..before {
            // Identity-like layers that keep the huge input huge but finite.
            net = net.push(Linear::from_tensors(eye(4), None).unwrap());
        }
        let ln_at = before;
        // The LayerNorm's statistics stay finite on these inputs (summed in f64 where f32
        // overflows), but a scale near f32's largest value overflows its output.
        let mut ln = LayerNorm::new(4).unwrap();
        // Each row normalises to ±1.34 and ±0.45: 1.34 times anything past 2.54e38 overflows.
        let big = rng.random_range(2.6e38f32..3.4e38);
        ln.weight_mut().unwrap().set(Tensor::full(&[4], big));
        net = net.push(ln);
        net = net.push(Linear::new(4, 2, &mut rng).unwrap());
        let scale = rng.random_range(1e25f32..1e36);
        let x = Tensor::from_fn(&[2, 4], |i| scale * (i as f32 - 3.5));
        let tape = Tape::new();
        tape.set_detect_anomaly(true);
        let mut ctx = Ctx::new(&tape);
        let _ = net.forward(&mut ctx, tape.constant(x));
        let a = tape.anomaly().expect("an anomaly");
        assert_eq!(
            a.label.as_deref(),
            Some(ln_at.to_string().as_str()),
            "case {case}: {a}"
        );
    }
}

fn eye(n: usize) -> Tensor<f32> {
    Tensor::from_fn(&[n, n], |i| if i / n == i % n { 1.0 } else { 0.0 })
}

/// Item 2 in backward: a rule that produces a non-finite gradient inside a layer names it.
#[test]
fn backward_anomaly_names_the_layer() {
    for k in 0..4 {
        let mut net = Sequential::<f64>::new();
        for _ in 0..k {
            net = net.push(Activation::Tanh);
        }
        // sqrt at 0 has an infinite derivative: the layer at index k takes it.
        net = net.push(Sqrt).push(Activation::Tanh);
        let tape = Tape::new();
        tape.set_detect_anomaly(true);
        let mut ctx = Ctx::new(&tape);
        let y = net.forward(&mut ctx, tape.leaf(Tensor::zeros(&[2])));
        let _ = y.sum().backward();
        let a = tape.anomaly().expect("a backward anomaly");
        assert_eq!((a.phase, a.op), (Phase::Backward, "sqrt"));
        assert_eq!(a.label.as_deref(), Some(k.to_string().as_str()), "{a}");
    }
}

/// A layer without parameters that takes a square root.
#[derive(Clone, Debug)]
struct Sqrt;
impl Module<f64> for Sqrt {
    fn forward<'t>(
        &mut self,
        _ctx: &mut Ctx<'t, f64>,
        x: vgrad::Var<'t, f64>,
    ) -> vgrad::Var<'t, f64> {
        // An internal op, then an unlabelled output: the anomaly must come from the scope.
        (x * 1.0).sqrt()
    }
    fn visit(&self, _v: &mut dyn vgrad::nn::Visitor<f64>) {}
    fn visit_mut(&mut self, _v: &mut dyn vgrad::nn::VisitorMut<f64>) {}
}

/// Item 11: hooks that remove themselves, remove others or register more while they run.
#[test]
fn hooks_may_change_the_hook_list_while_they_run() {
    let mut rng = StdRng::seed_from_u64(4);
    for case in 0..100 {
        let tape = Tape::<f64>::new();
        let x = tape.leaf(Tensor::vector(&[1.0, 2.0]));
        let h = x * 3.0;
        let n = rng.random_range(1..5);
        let calls = Rc::new(RefCell::new(vec![0usize; n]));
        let handles = Rc::new(RefCell::new(Vec::new()));
        // Hook `victim` is removed by hook `remover` during the first sweep.
        let remover = rng.random_range(0..n);
        let victim = rng.random_range(0..n);
        for i in 0..n {
            let (c, hs, t) = (calls.clone(), handles.clone(), &tape as *const Tape<f64>);
            let handle = h.register_hook(move |_| {
                c.borrow_mut()[i] += 1;
                if i == remover {
                    let target = hs.borrow()[victim];
                    // SAFETY: the tape outlives every sweep this test runs.
                    let tape = unsafe { &*t };
                    tape.remove_hook(target);
                }
                None
            });
            handles.borrow_mut().push(handle);
        }
        let _ = h.sum().backward();
        let first = calls.borrow().clone();
        let _ = h.sum().backward();
        let second = calls.borrow().clone();
        for i in 0..n {
            // Before the removal in sweep 1: ran once; the victim never runs again.
            let ran_first = if i == victim && victim > remover {
                0
            } else {
                1
            };
            assert_eq!(first[i], ran_first, "case {case}: hook {i} in sweep 1");
            let ran_second = if i == victim { 0 } else { 1 };
            assert_eq!(
                second[i] - first[i],
                ran_second,
                "case {case}: hook {i} in sweep 2"
            );
        }
    }
}

/// A hook that registers an observer while it runs, and an observer that removes itself.
#[test]
fn a_hook_registering_an_observer_and_an_observer_removing_itself() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::vector(&[1.0, 2.0]));
    let h = (x * 2.0).label("h");
    let t: *const Tape<f64> = &tape;
    let late_calls = Rc::new(RefCell::new(0));
    let registered = Rc::new(RefCell::new(false));
    let (lc, reg) = (late_calls.clone(), registered.clone());
    h.register_hook(move |_| {
        if !*reg.borrow() {
            *reg.borrow_mut() = true;
            // SAFETY: the tape outlives both sweeps.
            let tape = unsafe { &*t };
            let lc = lc.clone();
            tape.on_labelled_grad(move |_, _, _| *lc.borrow_mut() += 1);
        }
        None
    });
    let observer_calls = Rc::new(RefCell::new(0));
    let handle = Rc::new(RefCell::new(None));
    let (oc, hd) = (observer_calls.clone(), handle.clone());
    let id = tape.on_labelled_grad(move |_, _, _| {
        *oc.borrow_mut() += 1;
        // SAFETY: as above.
        let tape = unsafe { &*t };
        assert!(tape.remove_hook(hd.borrow().expect("set before the sweep")));
    });
    *handle.borrow_mut() = Some(id);
    let _ = h.sum().backward();
    let after_first = *late_calls.borrow();
    let _ = h.sum().backward();
    assert_eq!(*observer_calls.borrow(), 1, "removed itself after one call");
    assert_eq!(
        *late_calls.borrow() - after_first,
        1,
        "the late observer runs"
    );
    assert!(!tape.remove_hook(id), "already removed");
}

/// Item 12: a reset removes tape-wide observers as the docs say.
#[test]
fn reset_removes_every_hook_and_observer() {
    let mut tape = Tape::<f64>::new();
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    let old = tape.on_labelled_grad(move |_, _, _| *c.borrow_mut() += 1);
    for _ in 0..3 {
        tape.reset();
        let x = tape.leaf(Tensor::scalar(2.0));
        let _ = (x * x).label("sq").backward();
    }
    assert_eq!(*calls.borrow(), 0, "the observer did not survive the reset");
    // A handle from before the reset does not remove a hook registered after it.
    let c = calls.clone();
    let new = tape.on_labelled_grad(move |_, _, _| *c.borrow_mut() += 1);
    assert!(!tape.remove_hook(old));
    let x = tape.leaf(Tensor::scalar(2.0));
    let _ = (x * x).label("sq").backward();
    assert_eq!(*calls.borrow(), 1);
    assert!(tape.remove_hook(new));
}

/// Item 13: a second `backward_step` through one tape is an error that changes nothing, and a
/// plain backward through a consumed tape panics; a reset tape works again.
#[test]
fn backward_step_twice_is_an_error_and_leaves_the_weights() {
    let mut rng = StdRng::seed_from_u64(5);
    for case in 0..20 {
        let mut net = stack(rng.random_range(1..4), Activation::Tanh, &mut rng);
        let mut opt = Sgd::new(SgdConfig {
            lr: 0.1,
            momentum: if case % 2 == 0 { 0.9 } else { 0.0 },
            ..Default::default()
        })
        .unwrap();
        let mut tape = Tape::new();
        let x = Tensor::from_fn(&[3, 4], |i| (i as f32 * 0.37).sin());
        let snapshot = |net: &Sequential<f32>| {
            net.named_parameters()
                .into_iter()
                .map(|(n, t)| (n, t.to_vec()))
                .collect::<Vec<_>>()
        };
        let before = snapshot(&net);
        {
            let mut ctx = Ctx::new(&tape);
            let loss = net
                .forward(&mut ctx, tape.constant(x.clone()))
                .square()
                .mean();
            opt.backward_step(&mut net, &ctx, loss).unwrap();
            let after_first = snapshot(&net);
            assert_ne!(after_first, before, "the first step moved the weights");
            let err = opt.backward_step(&mut net, &ctx, loss).unwrap_err();
            assert!(matches!(err, vgrad::Error::State(_)), "{err}");
            assert!(err.to_string().contains("backward_step"), "{err}");
            assert_eq!(
                snapshot(&net),
                after_first,
                "case {case}: a refused step changes nothing"
            );
            let msg = panic_message(|| {
                let _ = loss.backward();
            })
            .expect("a backward through a consumed tape panics");
            assert!(msg.contains("consumed"), "{msg}");
        }
        tape.reset();
        let mut ctx = Ctx::new(&tape);
        let loss = net.forward(&mut ctx, tape.constant(x)).square().mean();
        opt.backward_step(&mut net, &ctx, loss)
            .expect("a reset tape steps again");
    }
}

/// Item 11: composed ops name the op the caller wrote, and a range that overflows is named.
#[test]
fn panics_name_the_op_the_user_called() {
    let mut rng = StdRng::seed_from_u64(6);
    let mut tried = 0;
    for _ in 0..50 {
        let a: Vec<usize> = (0..rng.random_range(1..4))
            .map(|_| rng.random_range(2..5))
            .collect();
        let mut b = a.clone();
        let ax = rng.random_range(0..b.len());
        b[ax] += 1; // neither equal nor 1: does not broadcast
        for (op, want) in [(0, "sub"), (1, "div"), (2, "add"), (3, "mul")] {
            let tape = Tape::<f64>::new();
            let x = tape.leaf(Tensor::zeros(&a));
            let y = tape.leaf(Tensor::ones(&b));
            let msg = panic_message(|| {
                let _ = match op {
                    0 => x - y,
                    1 => x / y,
                    2 => x + y,
                    _ => x * y,
                };
            })
            .expect("a shape clash panics");
            assert!(msg.starts_with(&format!("{want}:")), "{want}: {msg}");
            assert!(
                msg.contains(&format!("{a:?}")) && msg.contains(&format!("{b:?}")),
                "{msg}"
            );
            tried += 1;
        }
    }
    assert_eq!(tried, 200);
    // Operands of two tapes, through the composed ops.
    for (op, want) in [(0, "sub"), (1, "div")] {
        let (t1, t2) = (Tape::<f32>::new(), Tape::<f32>::new());
        let (x, y) = (t1.leaf(Tensor::scalar(1.0)), t2.leaf(Tensor::scalar(1.0)));
        let msg = panic_message(|| {
            let _ = if op == 0 { x - y } else { x / y };
        })
        .unwrap();
        assert!(
            msg.starts_with(&format!("{want}: the operands belong")),
            "{msg}"
        );
    }
    // narrow with ranges whose end overflows.
    for start in [usize::MAX, usize::MAX - 1, usize::MAX / 2 + 1, 3] {
        let tape = Tape::<f32>::new();
        let x = tape.leaf(Tensor::zeros(&[2, 3]));
        let len = if start == 3 { 1 } else { usize::MAX / 2 + 2 };
        let msg = panic_message(|| {
            let _ = x.narrow(1, start, len);
        })
        .unwrap();
        assert!(msg.starts_with("narrow: range"), "{msg}");
    }
}
