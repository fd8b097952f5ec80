//! The small things a user reaches for in the first hour (issue 19, item 7): printing,
//! argmax and accuracy, full batches, BatchNorm from tensors, the re-exported `rand`.

use vgrad::nn::{accuracy, BatchNorm1d, BatchNormConfig, Ctx, Module};
use vgrad::{data, Error, Tape, Tensor};

/// Strings PyTorch 2.15 printed for the same values (`str(torch.tensor(v, dtype=float64))`,
/// without the `tensor(...)` wrapper); nested rows are printed on one line by vgrad.
#[test]
fn tensors_print_with_pytorchs_adaptive_format() {
    let cases: [(&[f64], &str); 8] = [
        (&[1.0, -2.0, 3.0], "[ 1., -2.,  3.]"),
        (&[0.5, 0.125], "[0.5000, 0.1250]"),
        (&[1e-30, 2.0], "[1.0000e-30, 2.0000e+00]"),
        (&[1e9, 1.0], "[1.0000e+09, 1.0000e+00]"),
        (&[0.0, 0.0], "[0., 0.]"),
        (&[1.5, f64::NAN, f64::INFINITY], "[1.5000,    nan,    inf]"),
        (&[123456.0, 0.001], "[1.2346e+05, 1.0000e-03]"),
        (&[-0.25, 1.0], "[-0.2500,  1.0000]"),
    ];
    for (v, want) in cases {
        assert_eq!(Tensor::vector(v).to_string(), want, "{v:?}");
        let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        if v.iter().all(|x| x.abs() > 1e-30 || *x == 0.0) {
            assert_eq!(Tensor::vector(&f).to_string(), want, "{v:?} as f32");
        }
    }
    let m = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert_eq!(m.to_string(), "[[1., 2.], [3., 4.]]");
    // A gradient of 1e-30 no longer prints as zero.
    assert_ne!(Tensor::scalar(1e-30f32).to_string(), "0.0000");
}

#[test]
fn argmax_and_accuracy() {
    let t = Tensor::from_vec(vec![1.0f64, f64::NAN, 3.0], &[3]).unwrap();
    assert_eq!(t.argmax(0), [1], "NaN wins, as in PyTorch");
    let logits = Tensor::from_fn(&[5, 4], |i| ((i * 37) % 11) as f32);
    let want: Vec<usize> = (0..5)
        .map(|r| {
            let row: Vec<f32> = (0..4).map(|c| logits.get(&[r, c])).collect();
            let max = row.iter().cloned().fold(f32::MIN, f32::max);
            row.iter().position(|&x| x == max).unwrap()
        })
        .collect();
    assert_eq!(logits.argmax(1), want);
    let acc = accuracy(&logits, &want);
    assert!((acc - 1.0).abs() < 1e-12);
    let wrong: Vec<usize> = want.iter().map(|&c| (c + 1) % 4).collect();
    assert!(accuracy(&logits, &wrong).abs() < 1e-12);
}

/// Full batches only: a BatchNorm never sees a batch of one.
#[test]
fn full_batches_drop_the_remainder() {
    let moons = data::two_moons::<f32>(65, 0.1, 0).unwrap();
    let sizes: Vec<usize> = moons
        .batches(16, 1)
        .unwrap()
        .map(|(_, y)| y.len())
        .collect();
    assert_eq!(sizes, [16, 16, 16, 16, 1]);
    let full: Vec<usize> = moons
        .full_batches(16, 1)
        .unwrap()
        .map(|(_, y)| y.len())
        .collect();
    assert_eq!(full, [16, 16, 16, 16]);
    let mut bn = BatchNorm1d::<f32>::new(2).unwrap();
    for (x, _) in moons.full_batches(16, 1).unwrap() {
        let tape = Tape::new();
        let _ = bn.forward(&mut Ctx::new(&tape), tape.constant(x));
    }
    assert_eq!(bn.num_batches_tracked(), Some(4));
    assert!(matches!(moons.full_batches(0, 0), Err(Error::Config(_))));
}

#[test]
fn batchnorm_from_tensors_and_its_running_statistics() {
    let cfg = BatchNormConfig::default();
    let v = |x: &[f64]| Tensor::vector(x);
    let bn = BatchNorm1d::from_tensors(
        cfg,
        Some((v(&[1.0, 2.0, 3.0]), v(&[0.0, 0.1, 0.2]))),
        Some((v(&[0.5, 0.5, 0.5]), v(&[2.0, 2.0, 2.0]))),
    )
    .unwrap();
    assert_eq!(bn.num_features(), 3);
    assert_eq!(bn.weight().unwrap().value().data(), &[1.0, 2.0, 3.0]);
    // Mismatched lengths, missing pieces, a layer without running statistics.
    assert!(matches!(
        BatchNorm1d::from_tensors(cfg, Some((v(&[1.0]), v(&[0.0, 0.0]))), None),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        BatchNorm1d::from_tensors(
            cfg,
            Some((v(&[1.0]), v(&[0.0, 0.0]))),
            Some((v(&[0.0]), v(&[1.0])))
        ),
        Err(Error::Shape(_))
    ));
    let no_stats = BatchNormConfig {
        track_running_stats: false,
        ..cfg
    };
    let mut plain = BatchNorm1d::<f64>::with_config(2, no_stats).unwrap();
    assert!(matches!(
        plain.set_running_stats(v(&[0.0, 0.0]), v(&[1.0, 1.0])),
        Err(Error::Config(_))
    ));
    let mut bn = bn;
    assert!(matches!(
        bn.set_running_stats(v(&[0.0]), v(&[1.0, 1.0, 1.0])),
        Err(Error::Shape(_))
    ));
    assert_eq!(
        bn.running_mean().unwrap().data(),
        &[0.5, 0.5, 0.5],
        "unchanged"
    );
}

/// The generator type constructors take is reachable through vgrad, and so is the thread
/// setting, beside `set_flush_denormal`.
#[test]
fn rand_and_threads_are_reexported() {
    use vgrad::rand::SeedableRng;
    let mut rng = vgrad::rand::rngs::StdRng::seed_from_u64(3);
    let a = vgrad::nn::Linear::<f32>::new(2, 2, &mut rng).unwrap();
    let b = vgrad::nn::Linear::<f32>::new(2, 2, &mut vgrad::seeded_rng(3)).unwrap();
    assert_eq!(a.weight().value().data(), b.weight().value().data());
    let before = vgrad::num_threads();
    vgrad::set_num_threads(1);
    assert_eq!(vgrad::num_threads(), 1);
    vgrad::set_num_threads(before);
}
