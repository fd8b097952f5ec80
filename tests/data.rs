//! The datasets' contract: the bundled digits, their documented split and standardisation, the
//! parser's checks, the synthetic sets and mini-batching.
//!
//! Provenance: the pinned split values in `digits_split_matches_the_python_twin` were printed by
//! `scripts/digits_split.py`, an independent Python implementation of the documented rule,
//! run against scikit-learn 1.9.1's `load_digits()`.

use vgrad::data::{self, Dataset};
use vgrad::{Error, Tensor};

static DIGITS_BIN: &[u8] = include_bytes!("../data/digits.bin");

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// Per-feature (column) mean and population standard deviation of an `[n, f]` tensor.
fn column_stats(x: &Tensor<f64>) -> Vec<(f64, f64)> {
    let (n, f) = (x.shape()[0], x.shape()[1]);
    (0..f)
        .map(|j| {
            let col: Vec<f64> = (0..n).map(|i| x.data()[i * f + j]).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            (mean, var.sqrt())
        })
        .collect()
}

fn class_counts(y: &[usize], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &label in y {
        counts[label] += 1;
    }
    counts
}

// ---- digits ---------------------------------------------------------------------------------

const DIGITS_CLASS_COUNTS: [usize; 10] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];
const DIGITS_TEST_COUNTS: [usize; 10] = [36, 36, 36, 36, 37, 36, 36, 36, 35, 36];

#[test]
fn bundled_digits_parse_to_1797_images_of_64_pixels() {
    let raw = data::parse_digits::<f64>(DIGITS_BIN).unwrap();
    assert_eq!(raw.x.shape(), &[1797, 64]);
    assert_eq!(raw.len(), 1797);
    assert_eq!(raw.classes, 10);
    assert_eq!(class_counts(&raw.y, 10), DIGITS_CLASS_COUNTS);
    assert!(raw
        .x
        .data()
        .iter()
        .all(|&p| (0.0..=16.0).contains(&p) && p.fract() == 0.0));
    // scikit-learn's first image is a 0 whose top row is [0, 0, 5, 13, 9, 1, 0, 0].
    assert_eq!(raw.y[0], 0);
    assert_eq!(
        &raw.x.data()[..8],
        &[0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
    );
}

#[test]
fn digits_split_has_documented_sizes_and_is_stratified() {
    let split = data::digits::<f64>().unwrap();
    assert_eq!(split.train.x.shape(), &[1437, 64]);
    assert_eq!(split.test.x.shape(), &[360, 64]);
    assert_eq!((split.train.len(), split.test.len()), (1437, 360));
    assert_eq!((split.train.classes, split.test.classes), (10, 10));

    let test_counts = class_counts(&split.test.y, 10);
    let train_counts = class_counts(&split.train.y, 10);
    assert_eq!(test_counts, DIGITS_TEST_COUNTS);
    for c in 0..10 {
        assert!(train_counts[c] > 0 && test_counts[c] > 0, "class {c}");
        assert_eq!(train_counts[c] + test_counts[c], DIGITS_CLASS_COUNTS[c]);
        // A fifth of each class, rounded either way.
        assert!(test_counts[c].abs_diff(DIGITS_CLASS_COUNTS[c] / 5) <= 1);
    }

    // The indices partition 0..1797, ascending within each split, and agree with the labels.
    let raw = data::parse_digits::<f64>(DIGITS_BIN).unwrap();
    let mut all: Vec<usize> = split
        .train_index
        .iter()
        .chain(&split.test_index)
        .copied()
        .collect();
    assert!(split.train_index.windows(2).all(|w| w[0] < w[1]));
    assert!(split.test_index.windows(2).all(|w| w[0] < w[1]));
    all.sort_unstable();
    assert_eq!(all, (0..1797).collect::<Vec<_>>());
    for (ds, index) in [
        (&split.train, &split.train_index),
        (&split.test, &split.test_index),
    ] {
        let labels: Vec<usize> = index.iter().map(|&i| raw.y[i]).collect();
        assert_eq!(ds.y, labels);
    }
}

#[test]
fn digits_are_standardised_with_train_statistics() {
    let split = data::digits::<f64>().unwrap();
    let raw = data::parse_digits::<f64>(DIGITS_BIN).unwrap();
    let raw_train = raw.x.gather_rows(&split.train_index);
    let raw_stats = column_stats(&raw_train);

    let mut constant = 0;
    for (j, &(mean, std)) in column_stats(&split.train.x).iter().enumerate() {
        assert!(mean.abs() < 1e-12, "feature {j}: train mean {mean}");
        if raw_stats[j].1 == 0.0 {
            // Left centred, not divided by zero: the feature is 0 everywhere in train.
            constant += 1;
            assert_eq!(std, 0.0, "feature {j}");
        } else {
            assert!(close(std, 1.0, 1e-12), "feature {j}: train std {std}");
        }
    }
    // At least the blank corner pixel 0 (and pixels 32 and 39, blank in all 1,797 images).
    assert!(constant >= 3, "{constant} constant features");

    // The test split uses the train statistics, not its own.
    let raw_test = raw.x.gather_rows(&split.test_index);
    for i in 0..split.test.len() {
        for (j, &(mean, std)) in raw_stats.iter().enumerate() {
            let scale = if std > 0.0 { std } else { 1.0 };
            let want = (raw_test.get(&[i, j]) - mean) / scale;
            assert!(close(split.test.x.get(&[i, j]), want, 1e-12), "({i}, {j})");
        }
    }
    assert!(split.train.x.all_finite() && split.test.x.all_finite());
}

#[test]
fn digits_split_matches_the_python_twin() {
    let split = data::digits::<f64>().unwrap();
    assert_eq!(
        &split.test_index[..10],
        &[7, 8, 12, 15, 16, 20, 21, 22, 25, 32]
    );
    assert_eq!(split.test_index.iter().sum::<usize>(), 317_145);
    let want = [
        0.0, -0.328734, 0.376458, -0.916292, 0.262186, 1.813321, 4.226333, 0.829921,
    ];
    for (j, &w) in want.iter().enumerate() {
        let got = split.test.x.get(&[0, j]);
        assert!((got - w).abs() < 1e-6, "feature {j}: {got} vs {w}");
    }
}

#[test]
fn digits_are_deterministic_and_agree_across_precisions() {
    let a = data::digits::<f64>().unwrap();
    let b = data::digits::<f64>().unwrap();
    assert_eq!(a.train.x.data(), b.train.x.data());
    assert_eq!(a.test.x.data(), b.test.x.data());
    assert_eq!((&a.train.y, &a.test.y), (&b.train.y, &b.test.y));

    let s = data::digits::<f32>().unwrap();
    assert_eq!(s.train_index, a.train_index);
    assert_eq!(s.test.y, a.test.y);
    assert!(s.train.x.cast::<f64>().allclose(&a.train.x, 1e-6, 1e-6));
    assert!(s.test.x.cast::<f64>().allclose(&a.test.x, 1e-6, 1e-6));
}

// ---- the parser's checks ----------------------------------------------------------------------

fn assert_format_error(bytes: &[u8], what: &str) {
    match data::parse_digits::<f32>(bytes) {
        Err(Error::Format(msg)) => assert!(!msg.is_empty(), "{what}"),
        Err(other) => panic!("{what}: expected Error::Format, got {other:?}"),
        Ok(_) => panic!("{what}: a corrupted buffer parsed"),
    }
}

#[test]
fn corrupted_digits_buffers_are_format_errors() {
    let good = DIGITS_BIN.to_vec();
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.clone();
        edit(&mut bytes);
        bytes
    };

    assert_format_error(&[], "empty");
    assert_format_error(&good[..10], "shorter than the header");
    assert_format_error(&good[..16], "header only");
    assert_format_error(&good[..good.len() - 1], "truncated by a byte");
    assert_format_error(&with(&|b| b.push(0)), "one byte too many");
    assert_format_error(&with(&|b| b[0] = b'X'), "bad magic");
    assert_format_error(&with(&|b| b[7] = b'2'), "unknown format version");
    assert_format_error(&with(&|b| b[8] = b[8].wrapping_add(1)), "wrong count");
    assert_format_error(&with(&|b| b[8..12].fill(0xFF)), "huge count");
    assert_format_error(&with(&|b| b[12] = 63), "63 features");
    assert_format_error(&with(&|b| b[14..16].fill(0)), "no classes");
    assert_format_error(&with(&|b| b[16 + 5] = 17), "pixel above 16");
    assert_format_error(&with(&|b| b[16 + 64] = 10), "label 10 of 10 classes");
    let last_label = good.len() - 1;
    assert_format_error(&with(&|b| b[last_label] = 255), "last label out of range");

    // A well-formed buffer with zero samples is fine: nothing to reject.
    let mut empty = good[..16].to_vec();
    empty[8..12].fill(0);
    let parsed = data::parse_digits::<f32>(&empty).unwrap();
    assert!(parsed.is_empty());
}

#[test]
fn format_errors_speak_to_a_person() {
    let Err(err) = data::parse_digits::<f32>(&DIGITS_BIN[..100]) else {
        panic!("truncated buffer parsed");
    };
    let msg = err.to_string();
    assert!(msg.contains("digits data") && msg.contains("100"), "{msg}");
}

// ---- two moons --------------------------------------------------------------------------------

#[test]
fn two_moons_shape_labels_and_balance() {
    for n in [0, 1, 2, 7, 100] {
        let m = data::two_moons::<f32>(n, 0.1, 3).unwrap();
        assert_eq!(m.x.shape(), &[n, 2]);
        assert_eq!(m.len(), n);
        assert_eq!(m.classes, 2);
        assert_eq!(class_counts(&m.y, 2), [n / 2, n - n / 2], "n = {n}");
        assert!(m.x.all_finite());
    }
}

#[test]
fn two_moons_without_noise_lie_on_their_half_circles() {
    let m = data::two_moons::<f64>(101, 0.0, 0).unwrap();
    for (i, &label) in m.y.iter().enumerate() {
        let (x, y) = (m.x.get(&[i, 0]), m.x.get(&[i, 1]));
        let (r, upper) = match label {
            0 => ((x * x + y * y).sqrt(), y >= -1e-12),
            _ => (
                ((1.0 - x).powi(2) + (0.5 - y).powi(2)).sqrt(),
                y <= 0.5 + 1e-12,
            ),
        };
        assert!(
            close(r, 1.0, 1e-12) && upper,
            "sample {i}: ({x}, {y}), class {label}"
        );
    }
    // Both ends of each moon are present: t = 0 and t = π.
    let has = |px: f64, py: f64| {
        (0..m.len())
            .any(|i| (m.x.get(&[i, 0]) - px).abs() < 1e-12 && (m.x.get(&[i, 1]) - py).abs() < 1e-12)
    };
    assert!(has(1.0, 0.0) && has(-1.0, 0.0) && has(0.0, 0.5) && has(2.0, 0.5));
}

#[test]
fn two_moons_are_deterministic_by_seed_and_shuffled() {
    let a = data::two_moons::<f64>(200, 0.1, 11).unwrap();
    let b = data::two_moons::<f64>(200, 0.1, 11).unwrap();
    let c = data::two_moons::<f64>(200, 0.1, 12).unwrap();
    assert_eq!(a.x.data(), b.x.data());
    assert_eq!(a.y, b.y);
    assert_ne!(a.x.data(), c.x.data());
    // Shuffled: the first half is not all one class.
    assert!(a.y[..100].contains(&0) && a.y[..100].contains(&1));
    // The noise has roughly the requested spread around the clean points.
    let clean = data::two_moons::<f64>(200, 0.0, 11).unwrap();
    assert_eq!(clean.y, a.y, "noise does not change the order");
    let d = a.x.sub(&clean.x);
    let sd = (d.data().iter().map(|v| v * v).sum::<f64>() / d.numel() as f64).sqrt();
    assert!((sd - 0.1).abs() < 0.015, "noise sd {sd}");
}

#[test]
fn bad_noise_is_a_config_error() {
    for noise in [-0.1, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            data::two_moons::<f32>(10, noise, 0),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            data::spirals::<f32>(10, 3, noise, 0),
            Err(Error::Config(_))
        ));
    }
}

// ---- spirals ----------------------------------------------------------------------------------

#[test]
fn spirals_shape_labels_and_balance() {
    for (n, k) in [(0, 1), (1, 1), (50, 3), (7, 5)] {
        let s = data::spirals::<f32>(n, k, 0.05, 2).unwrap();
        assert_eq!(s.x.shape(), &[n * k, 2]);
        assert_eq!(s.classes, k);
        assert_eq!(class_counts(&s.y, k), vec![n; k], "({n}, {k})");
        assert!(s.x.all_finite());
    }
    assert!(matches!(
        data::spirals::<f32>(10, 0, 0.1, 0),
        Err(Error::Config(_))
    ));
}

#[test]
fn spirals_without_noise_follow_their_arms() {
    let (n, k) = (40, 3);
    let s = data::spirals::<f64>(n, k, 0.0, 5).unwrap();
    let mut radii = vec![Vec::new(); k];
    for (i, &label) in s.y.iter().enumerate() {
        let (x, y) = (s.x.get(&[i, 0]), s.x.get(&[i, 1]));
        let r = x.hypot(y);
        let theta = std::f64::consts::TAU * label as f64 / k as f64 + 4.0 * r;
        assert!(close(x, r * theta.cos(), 1e-12) && close(y, r * theta.sin(), 1e-12));
        radii[label].push(r);
    }
    for mut arm in radii {
        arm.sort_by(f64::total_cmp);
        for (i, r) in arm.iter().enumerate() {
            assert!(close(*r, (i + 1) as f64 / n as f64, 1e-12));
        }
    }
}

#[test]
fn spirals_are_deterministic_by_seed() {
    let a = data::spirals::<f32>(30, 4, 0.05, 9).unwrap();
    let b = data::spirals::<f32>(30, 4, 0.05, 9).unwrap();
    let c = data::spirals::<f32>(30, 4, 0.05, 10).unwrap();
    assert_eq!(a.x.data(), b.x.data());
    assert_eq!(a.y, b.y);
    assert_ne!(a.x.data(), c.x.data());
}

// ---- batching ---------------------------------------------------------------------------------

/// A dataset whose only feature is the row number, so a batch shows which rows it holds.
fn numbered(n: usize) -> Dataset<f64> {
    Dataset {
        x: Tensor::from_fn(&[n, 1], |i| i as f64),
        y: (0..n).map(|i| i % 3).collect(),
        classes: 3,
    }
}

#[test]
fn batch_gathers_rows_and_labels() {
    let ds = numbered(10);
    let (x, y) = ds.batch(&[9, 2, 2]);
    assert_eq!(x.shape(), &[3, 1]);
    assert_eq!(x.data(), &[9.0, 2.0, 2.0]);
    assert_eq!(y, [0, 2, 2]);
    let (x, y) = ds.batch(&[]);
    assert_eq!(x.shape(), &[0, 1]);
    assert!(y.is_empty());
}

#[test]
fn batches_cover_every_sample_once_in_a_seeded_order() {
    let ds = numbered(23);
    let epoch = |seed| -> Vec<(Vec<usize>, Vec<usize>)> {
        ds.batches(5, seed)
            .unwrap()
            .map(|(x, y)| (x.data().iter().map(|&v| v as usize).collect(), y))
            .collect()
    };
    let first = epoch(0);
    let sizes: Vec<usize> = first.iter().map(|(rows, _)| rows.len()).collect();
    assert_eq!(sizes, [5, 5, 5, 5, 3]);
    for (rows, labels) in &first {
        let want: Vec<usize> = rows.iter().map(|r| r % 3).collect();
        assert_eq!(labels, &want, "labels travel with their rows");
    }
    let mut seen: Vec<usize> = first.iter().flat_map(|(rows, _)| rows.clone()).collect();
    assert_ne!(seen, (0..23).collect::<Vec<_>>(), "shuffled");
    seen.sort_unstable();
    assert_eq!(seen, (0..23).collect::<Vec<_>>());

    assert_eq!(epoch(0), first, "same seed, same order");
    assert_ne!(epoch(1), first, "new seed, new order");
}

#[test]
fn batches_edge_cases() {
    let ds = numbered(4);
    assert!(matches!(ds.batches(0, 0), Err(Error::Config(_))));
    assert_eq!(ds.batches(10, 0).unwrap().count(), 1);
    assert_eq!(numbered(0).batches(3, 0).unwrap().count(), 0);
}
