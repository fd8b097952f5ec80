//! Shapes and sizes under attack (issue 16, items 6 and 10): element counts that overflow are
//! refused by constructors with `Error::Shape` and by the maths with a panic naming the op and
//! the shape; sizes that cannot be allocated are `Error::Alloc` from fallible constructors,
//! never an abort, and cost no memory.

use super::engine::panic_message;
use crate::meter::peak_during;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use vgrad::nn::init::{FanMode, Init, Nonlinearity};
use vgrad::nn::{BatchNorm1d, LayerNorm, Linear, LinearConfig};
use vgrad::{data, Error, Tape, Tensor};

/// A shape of 1–4 axes whose element count (or byte count) overflows, possibly with zeros
/// that a wrapped product would hide.
fn overflowing_shape(rng: &mut StdRng) -> Vec<usize> {
    let big = [
        1usize << 32,
        1 << 33,
        1 << 62,
        usize::MAX,
        usize::MAX / 3,
        3 << 30,
    ];
    loop {
        let n = rng.random_range(2..5);
        let s: Vec<usize> = (0..n)
            .map(|_| match rng.random_range(0..3) {
                0 => big[rng.random_range(0..big.len())],
                1 => rng.random_range(1..8),
                _ => 1 << rng.random_range(20..40),
            })
            .collect();
        let fits = s
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(4))
            .is_some_and(|b| b <= isize::MAX as usize);
        if !fits {
            return s;
        }
    }
}

/// Item 6: every constructor refuses an overflowing shape with `Error::Shape`, and the
/// infallible ones panic naming themselves and the shape.
#[test]
fn overflowing_shapes_are_refused_by_name() {
    let mut rng = StdRng::seed_from_u64(10);
    let (mut errors, mut panics) = (0, 0);
    for _ in 0..300 {
        let shape = overflowing_shape(&mut rng);
        for data in [vec![], vec![0.0f64; 4]] {
            match Tensor::from_vec(data.clone(), &shape) {
                Err(Error::Shape(msg)) => {
                    assert!(msg.contains(&format!("{shape:?}")), "{msg}");
                    errors += 1;
                }
                other => panic!("from_vec {shape:?}: {other:?}"),
            }
            assert!(matches!(
                Tensor::from_slice(&data, &shape),
                Err(Error::Shape(_))
            ));
        }
        for (op, f) in [
            (
                "zeros",
                (|s: &[usize]| drop(Tensor::<f32>::zeros(s))) as fn(&[usize]),
            ),
            ("ones", |s| drop(Tensor::<f64>::ones(s))),
            ("full", |s| drop(Tensor::<f32>::full(s, 2.0))),
            ("from_fn", |s| drop(Tensor::<f64>::from_fn(s, |i| i as f64))),
        ] {
            let msg = panic_message(|| f(&shape)).expect("an overflowing shape panics");
            assert!(msg.starts_with(&format!("{op}: shape {shape:?}")), "{msg}");
            panics += 1;
        }
    }
    assert_eq!((errors, panics), (600, 1200));
}

/// Item 6: ops whose result shape is not bounded by their inputs' memory (reshape, broadcast,
/// matmul with an empty inner extent, concat, scatter) check the result's count.
#[test]
fn ops_check_the_count_of_the_shape_they_make() {
    let mut rng = StdRng::seed_from_u64(11);
    for case in 0..100 {
        let big = 1usize << rng.random_range(32..63);
        let tape = Tape::<f32>::new();
        // reshape of an empty tensor to a shape whose product wraps to 0.
        let empty = tape.leaf(Tensor::zeros(&[0]));
        let target = [big, 1 << 62, 4];
        let msg = panic_message(|| {
            let _ = empty.reshape(&target);
        })
        .expect("reshape panics");
        assert!(msg.starts_with("reshape:"), "case {case}: {msg}");
        // broadcast of [big, 0]-like extents.
        let a = tape.leaf(Tensor::zeros(&[1, 1]));
        let msg = panic_message(|| {
            let _ = a.broadcast_to(&[big, 1 << 40]);
        })
        .expect("broadcast_to panics");
        assert!(msg.starts_with("broadcast_to:"), "case {case}: {msg}");
        // matmul [big, 0] x [0, big]: inputs are empty, the output is astronomically large.
        let l = tape.leaf(Tensor::zeros(&[big, 0]));
        let r = tape.leaf(Tensor::zeros(&[0, big]));
        let msg = panic_message(|| {
            let _ = l.matmul(r);
        })
        .expect("matmul panics");
        assert!(msg.starts_with("matmul:"), "case {case}: {msg}");
        // Broadcasting between empty operands: an empty result whose other extents overflow
        // together is refused too (every partial product of a shape must fit).
        let p = tape.leaf(Tensor::zeros(&[big, 1, 0]));
        let q = tape.leaf(Tensor::zeros(&[1, 1 << 40, 0]));
        let msg = panic_message(|| {
            let _ = p + q;
        })
        .expect("add panics");
        assert!(msg.starts_with("add:"), "case {case}: {msg}");
        assert_eq!((p + p).shape().as_slice(), &[big, 1, 0]);
        // concat of empty parts whose extents along the axis overflow together.
        let e = tape.leaf(Tensor::zeros(&[0, usize::MAX / 2 + 1]));
        let msg = panic_message(|| {
            let _ = vgrad::Var::concat(&[e, e], 1);
        })
        .expect("concat panics");
        assert!(msg.starts_with("concat:"), "case {case}: {msg}");
    }
}

/// Item 10: fallible constructors report sizes that cannot be allocated as `Error::Alloc`
/// (or `Error::Shape` when the count overflows) without aborting and without holding memory.
#[test]
fn fallible_constructors_never_abort_on_huge_sizes() {
    let mut rng = StdRng::seed_from_u64(12);
    // 2⁴³ f32 elements (32 TiB) cannot be allocated here; 2⁶² overflows the byte count.
    let sizes = [
        100_000usize,
        1 << 22,
        1 << 40,
        1 << 43,
        1 << 62,
        usize::MAX,
        usize::MAX / 2,
    ];
    let mut tried = 0;
    for _ in 0..60 {
        let a = sizes[rng.random_range(0..sizes.len())];
        let b = sizes[rng.random_range(0..sizes.len())];
        let (r, peak) = peak_during(|| Linear::<f32>::new(a, b, &mut StdRng::seed_from_u64(0)));
        let fits = a.checked_mul(b).is_some_and(|n| n <= (1 << 30));
        match r {
            Ok(l) => assert!(fits, "Linear({a}, {b}) built: {l:?}"),
            Err(Error::Alloc { bytes, .. }) => assert!(bytes >= a.min(b)),
            Err(Error::Shape(msg)) => assert!(msg.contains("more elements than"), "{msg}"),
            Err(e) => panic!("Linear({a}, {b}): {e}"),
        }
        assert!(
            peak < 1 << 20,
            "Linear({a}, {b}) held {peak} bytes while failing"
        );
        tried += 1;
        for init in [
            Init::Zeros,
            Init::KaimingNormal {
                mode: FanMode::FanIn,
                nonlinearity: Nonlinearity::Relu,
            },
        ] {
            let cfg = LinearConfig::init(init);
            let r = Linear::<f64>::with_config(a, b, cfg, &mut StdRng::seed_from_u64(0));
            assert!(r.is_err() || a.saturating_mul(b) <= 1 << 30);
            tried += 1;
        }
    }
    for &n in &sizes[2..] {
        let (r, peak) = peak_during(|| BatchNorm1d::<f64>::new(n));
        assert!(
            matches!(r, Err(Error::Alloc { .. }) | Err(Error::Shape(_))),
            "{n}: {r:?}"
        );
        let (r2, peak2) = peak_during(|| LayerNorm::<f32>::new(n));
        assert!(
            matches!(r2, Err(Error::Alloc { .. }) | Err(Error::Shape(_))),
            "{n}: {r2:?}"
        );
        let (m, peak3) = peak_during(|| data::two_moons::<f32>(n, 0.1, 0));
        assert!(
            matches!(m, Err(Error::Alloc { .. })),
            "{n}: {:?}",
            m.map(|d| d.len())
        );
        let (s, peak4) = peak_during(|| data::spirals::<f32>(n, 3, 0.1, 0));
        assert!(
            matches!(s, Err(Error::Alloc { .. }) | Err(Error::Shape(_))),
            "{n}: {:?}",
            s.map(|d| d.len())
        );
        for p in [peak, peak2, peak3, peak4] {
            assert!(p < 1 << 20, "{n}: held {p} bytes while failing");
        }
        tried += 4;
    }
    assert_eq!(tried, 200);
}
