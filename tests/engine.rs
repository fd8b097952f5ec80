//! The engine's contract: accumulation, long chains, constants, higher order, hooks, anomalies.

use vgrad::{gradcheck, GradcheckOptions, Phase, Tape, Tensor};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn fan_out_accumulates() {
    let tape = Tape::<f64>::new();
    let a = tape.leaf(Tensor::scalar(1.5));
    let b = a + a;
    let c = b + b;
    let g = c.backward();
    assert!(close(g.wrt(a).unwrap().item(), 4.0, 1e-15));
    // A node used by consumers of different kinds: d/da (a·a + 3a) = 2a + 3.
    let d = a * a + a * 3.0;
    assert!(close(d.backward().wrt(a).unwrap().item(), 6.0, 1e-15));
}

#[test]
fn hundred_thousand_op_chain_needs_no_stack() {
    let tape = Tape::<f32>::new();
    let x = tape.leaf(Tensor::scalar(0.5));
    let mut y = x;
    for _ in 0..100_000 {
        y = y * 1.0;
    }
    let g = y.backward();
    assert!((g.wrt(x).unwrap().item() - 1.0).abs() < 1e-6);
    assert!(tape.len() > 100_000);
}

#[test]
fn branch_without_gradient_records_no_backward_work() {
    let tape = Tape::<f64>::new();
    let w = tape.leaf(Tensor::vector(&[2.0, 3.0]));
    let c = tape.constant(Tensor::vector(&[1.0, 1.0]));
    let frozen = (c * 4.0).exp().sum(); // constant branch
    assert!(!frozen.requires_grad());
    let y = (w * c).sum() + frozen;
    let g = y.backward();
    assert_eq!(g.wrt(w).unwrap().data(), &[1.0, 1.0]);
    assert!(g.wrt(c).is_none());
    assert_eq!(g.len(), 1, "only the leaf's gradient is kept");
    // Detached values stop the gradient.
    let z = (w.detach() * w).sum();
    assert_eq!(z.backward().wrt(w).unwrap().data(), &[2.0, 3.0]);
}

#[test]
fn grad_disabled_tape_records_constants() {
    let tape = Tape::<f32>::new();
    tape.set_grad_enabled(false);
    let w = tape.leaf(Tensor::vector(&[1.0]));
    assert!(!w.requires_grad());
    assert!(!(w * 2.0).requires_grad());
}

#[test]
fn hessian_vector_product_of_tanh_mlp_matches_differences_of_gradient() {
    // f(w) = Σ tanh(tanh(x·W1)·W2), W packed as one leaf of 3·4 + 4·2 = 20 entries.
    let x = Tensor::from_fn(&[5, 3], |i| ((i as f64) * 0.37).sin());
    let w0 = Tensor::from_fn(&[20], |i| ((i as f64) * 0.91).cos() * 0.5);
    let v = Tensor::from_fn(&[20], |i| ((i as f64) * 1.7).sin());
    fn loss<'t>(x: vgrad::Var<'t, f64>, w: vgrad::Var<'t, f64>) -> vgrad::Var<'t, f64> {
        let w1 = w.narrow(0, 0, 12).reshape(&[3, 4]);
        let w2 = w.narrow(0, 12, 8).reshape(&[4, 2]);
        x.matmul(w1).tanh().matmul(w2).tanh().sum()
    }
    let grad_at = |w: &Tensor<f64>| -> Tensor<f64> {
        let tape = Tape::new();
        let wv = tape.leaf(w.clone());
        loss(tape.constant(x.clone()), wv)
            .backward()
            .wrt(wv)
            .unwrap()
            .clone()
    };
    let tape = Tape::new();
    let w = tape.leaf(w0.clone());
    let g = loss(tape.constant(x.clone()), w)
        .backward_graph()
        .wrt(w)
        .unwrap();
    let vv = tape.constant(v.clone());
    let hv = (g * vv).sum().backward().wrt(w).unwrap().clone();
    let eps = 1e-5;
    let plus = grad_at(&w0.add(&v.scale(eps)));
    let minus = grad_at(&w0.sub(&v.scale(eps)));
    let fd = plus.sub(&minus).scale(0.5 / eps);
    for (a, b) in hv.data().iter().zip(fd.data()) {
        assert!((a - b).abs() < 1e-6, "Hv {a} vs finite differences {b}");
    }
}

#[test]
fn graph_gradient_equals_plain_gradient() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_fn(&[2, 3], |i| i as f64 * 0.3 - 0.7));
    let y = (x.sigmoid() * x.tanh()).log_softmax(1).sum();
    let plain = y.backward().wrt(x).unwrap().clone();
    let graph = y.backward_graph().wrt(x).unwrap().value();
    assert!(plain.allclose(&graph, 1e-12, 1e-14));
}

#[test]
fn hooks_observe_replace_run_in_order_and_can_be_removed() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::vector(&[1.0, 2.0]));
    let h = x * 2.0;
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s1 = seen.clone();
    h.register_hook(move |g| {
        s1.borrow_mut().push(("first", g.to_vec()));
        Some(g.scale(3.0))
    });
    let s2 = seen.clone();
    let second = h.register_hook(move |g| {
        s2.borrow_mut().push(("second", g.to_vec()));
        None
    });
    let y = (h * h).sum(); // dy/dh = 2h = [4, 8]
    let g = y.backward();
    assert_eq!(
        *seen.borrow(),
        vec![("first", vec![4.0, 8.0]), ("second", vec![12.0, 24.0])]
    );
    assert_eq!(g.wrt(x).unwrap().data(), &[24.0, 48.0]);
    assert!(tape.remove_hook(second));
    assert!(!tape.remove_hook(second));
    seen.borrow_mut().clear();
    let _ = y.backward();
    assert_eq!(seen.borrow().len(), 1);
}

#[test]
fn anomaly_names_the_op_shapes_and_label() {
    let tape = Tape::<f32>::new();
    tape.set_detect_anomaly(true);
    let x = tape.leaf(Tensor::vector(&[1.0, 0.0]));
    let h = (x * 2.0).label("layer1");
    let y = h.ln(); // ln 0 = −∞
    let a = tape.anomaly().expect("an anomaly");
    assert_eq!(a.phase, Phase::Forward);
    assert_eq!(a.op, "ln");
    assert_eq!(a.input_shapes, vec![vec![2]]);
    assert_eq!(a.label.as_deref(), Some("layer1"));
    assert!(a.to_string().contains("ln"));
    let _ = y;

    // Backward: sqrt at 0 has an infinite derivative.
    let tape = Tape::<f64>::new();
    tape.set_detect_anomaly(true);
    let x = tape.leaf(Tensor::vector(&[0.0, 4.0]));
    let _ = x.sqrt().sum().backward();
    let a = tape.anomaly().expect("a backward anomaly");
    assert_eq!((a.phase, a.op), (Phase::Backward, "sqrt"));
}

#[test]
#[should_panic(expected = "add: the operands belong to two different tapes")]
fn mixing_tapes_panics() {
    let t1 = Tape::<f32>::new();
    let t2 = Tape::<f32>::new();
    let _ = t1.leaf(Tensor::scalar(1.0)) + t2.leaf(Tensor::scalar(1.0));
}

#[test]
#[should_panic(expected = "matmul: [2, 3] x [4, 5]: inner dimensions differ")]
fn matmul_shape_misuse_names_both_shapes() {
    let t = Tape::<f32>::new();
    let _ = t
        .leaf(Tensor::zeros(&[2, 3]))
        .matmul(t.leaf(Tensor::zeros(&[4, 5])));
}

#[test]
#[should_panic(expected = "linear: input [2, 3] x weight [4, 5]")]
fn linear_shape_misuse_names_both_shapes() {
    let t = Tape::<f32>::new();
    let _ = t
        .leaf(Tensor::zeros(&[2, 3]))
        .linear(t.leaf(Tensor::zeros(&[4, 5])), None);
}

#[test]
#[should_panic(expected = "linear: weight [4, 3] with bias [3]")]
fn linear_bias_misuse_names_both_shapes() {
    let t = Tape::<f32>::new();
    let _ = t.leaf(Tensor::zeros(&[2, 3])).linear(
        t.leaf(Tensor::zeros(&[4, 3])),
        Some(t.leaf(Tensor::zeros(&[3]))),
    );
}

#[test]
#[should_panic(expected = "backward: output of shape [2] is not a scalar")]
fn backward_of_non_scalar_panics() {
    let t = Tape::<f32>::new();
    let _ = t.leaf(Tensor::zeros(&[2])).backward();
}

#[test]
fn bad_constructors_are_errors() {
    let e = Tensor::<f32>::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
    assert!(e
        .to_string()
        .contains("[2, 3] needs 6 elements, but 5 were given"));
    assert!(Tensor::<f64>::from_slice(&[], &[0, 3]).is_ok());
}

#[test]
fn gradcheck_reports_the_worst_entry_of_a_wrong_gradient() {
    use std::sync::Arc;
    use vgrad::{CustomOp, Var};
    struct WrongSquare;
    impl CustomOp<f64> for WrongSquare {
        fn name(&self) -> &'static str {
            "wrong_square"
        }
        fn forward(&self, x: &[&Tensor<f64>]) -> Tensor<f64> {
            x[0].map(|v| v * v)
        }
        fn backward(
            &self,
            x: &[&Tensor<f64>],
            _y: &Tensor<f64>,
            g: &Tensor<f64>,
        ) -> Vec<Option<Tensor<f64>>> {
            vec![Some(g.zip_map(x[0], |g, v| g * v))] // should be 2v
        }
    }
    let x = Tensor::vector(&[1.0, 3.0]);
    let r = gradcheck(
        |v| Var::custom(Arc::new(WrongSquare), &[v[0]]),
        &[x],
        GradcheckOptions::default(),
    );
    assert!(!r.passed);
    let w = r.worst.unwrap();
    assert_eq!((w.input, w.index.clone(), w.output), (0, vec![1], 1));
    assert!(close(w.analytic, 3.0, 1e-12) && close(w.numeric, 6.0, 1e-6));
}
