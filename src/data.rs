//! Small classification datasets for examples and tests, with nothing to download.
//!
//! * [`digits`]: the UCI 8×8 handwritten digits (1,797 images, 10 classes), bundled inside the
//!   crate, split 1,437 / 360 into train and test and standardised. Credit and file format:
//!   `data/README.md` in the repository.
//! * [`two_moons`] and [`spirals`]: synthetic 2-D sets, generated from a seed, for demos that
//!   should run in milliseconds.
//!
//! Every set is a [`Dataset`]: features `x` of shape `[n, features]`, integer labels `y`, and the
//! number of classes. [`Dataset::batches`] deals shuffled mini-batches.
//!
//! # Randomness
//!
//! The generators, the digits split and the batch order use a small random number generator
//! that lives in this module (SplitMix64) rather than the `rand` crate: `rand` may change the
//! values a seeded generator produces in any minor release, and the digits split is part of
//! this module's documented contract. The trigonometry goes through `libm` for the same
//! reason — so that a seed gives the same points on every platform.
//!
//! # Example
//!
//! Softmax regression on two moons, trained by mini-batch gradient descent:
//!
//! ```
//! use vgrad::{data, Tape, Tensor};
//!
//! /// Mean cross-entropy of softmax(x·w + b) against the labels, and its gradients wrt w and b.
//! fn loss_and_grads(x: &Tensor<f64>, y: &[usize], w: &Tensor<f64>, b: &Tensor<f64>)
//!     -> (f64, Tensor<f64>, Tensor<f64>)
//! {
//!     let onehot = Tensor::from_fn(&[y.len(), 2], |i| if y[i / 2] == i % 2 { 1.0 } else { 0.0 });
//!     let tape = Tape::new();
//!     let (wv, bv) = (tape.leaf(w.clone()), tape.leaf(b.clone()));
//!     let logits = tape.constant(x.clone()).matmul(wv) + bv;
//!     let picked = logits.log_softmax(1) * tape.constant(onehot);
//!     let loss = picked.sum().scale(-1.0 / y.len() as f64);
//!     let g = loss.backward();
//!     (loss.value().item(), g.wrt(wv).unwrap().clone(), g.wrt(bv).unwrap().clone())
//! }
//!
//! let moons = data::two_moons::<f64>(200, 0.1, 7)?;
//! let (mut w, mut b) = (Tensor::zeros(&[2, 2]), Tensor::zeros(&[2]));
//! let (before, _, _) = loss_and_grads(&moons.x, &moons.y, &w, &b);
//! for epoch in 0..20 {
//!     for (x, y) in moons.batches(50, epoch)? {
//!         let (_, gw, gb) = loss_and_grads(&x, &y, &w, &b);
//!         w = w.sub(&gw.scale(0.5));
//!         b = b.sub(&gb.scale(0.5));
//!     }
//! }
//! let (after, _, _) = loss_and_grads(&moons.x, &moons.y, &w, &b);
//! assert!(after < 0.5 * before, "{before} -> {after}");
//! # Ok::<(), vgrad::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use std::fmt;

/// A labelled classification dataset: one row of `x` per sample, one label per row.
///
/// The fields are public so that a dataset can be built from any source; the methods assume
/// `x.shape()[0] == y.len()` and every label `< classes`, which all constructors in this module
/// guarantee.
#[derive(Clone)]
pub struct Dataset<T> {
    /// Features, shape `[n, features]`.
    pub x: Tensor<T>,
    /// Class labels, each in `0..classes`.
    pub y: Vec<usize>,
    /// Number of classes (labels need not all occur).
    pub classes: usize,
}

impl<T: Element> Dataset<T> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when the dataset has no samples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The samples at `indices`, in that order: their feature rows and their labels.
    ///
    /// # Panics
    /// If an index is out of range.
    ///
    /// # Example
    /// ```
    /// let moons = vgrad::data::two_moons::<f32>(10, 0.0, 0)?;
    /// let (x, y) = moons.batch(&[3, 0, 3]);
    /// assert_eq!(x.shape(), &[3, 2]);
    /// assert_eq!(y, vec![moons.y[3], moons.y[0], moons.y[3]]);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn batch(&self, indices: &[usize]) -> (Tensor<T>, Vec<usize>) {
        let x = self.x.gather_rows(indices);
        let y = indices.iter().map(|&i| self.y[i]).collect();
        (x, y)
    }

    /// One epoch of mini-batches: the samples in an order shuffled by `seed`, dealt in batches
    /// of `batch_size`; the last batch is smaller when `batch_size` does not divide
    /// [`len`](Dataset::len). Every sample appears exactly once.
    ///
    /// The same seed gives the same order, so pass a different seed each epoch (the epoch
    /// number will do) to see the data in a new order.
    ///
    /// # Errors
    /// [`Error::Config`] if `batch_size` is 0.
    ///
    /// # Example
    /// ```
    /// let moons = vgrad::data::two_moons::<f32>(10, 0.1, 0)?;
    /// for epoch in 0..2 {
    ///     let sizes: Vec<usize> = moons.batches(4, epoch)?.map(|(_, y)| y.len()).collect();
    ///     assert_eq!(sizes, [4, 4, 2]);
    /// }
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn batches(
        &self,
        batch_size: usize,
        seed: u64,
    ) -> Result<impl Iterator<Item = (Tensor<T>, Vec<usize>)> + '_> {
        self.dealt(batch_size, seed, false)
    }

    /// Like [`batches`](Dataset::batches), but only full batches: the last, smaller batch is
    /// dropped (PyTorch's `DataLoader(drop_last=True)`). Use it with `BatchNorm1d` in training
    /// mode, which cannot normalise a batch of one sample.
    ///
    /// # Errors
    /// [`Error::Config`] if `batch_size` is 0.
    ///
    /// # Example
    /// ```
    /// let moons = vgrad::data::two_moons::<f32>(10, 0.1, 0)?;
    /// let sizes: Vec<usize> = moons.full_batches(4, 0)?.map(|(_, y)| y.len()).collect();
    /// assert_eq!(sizes, [4, 4]);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn full_batches(
        &self,
        batch_size: usize,
        seed: u64,
    ) -> Result<impl Iterator<Item = (Tensor<T>, Vec<usize>)> + '_> {
        self.dealt(batch_size, seed, true)
    }

    fn dealt(
        &self,
        batch_size: usize,
        seed: u64,
        drop_last: bool,
    ) -> Result<impl Iterator<Item = (Tensor<T>, Vec<usize>)> + '_> {
        if batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        SplitMix64::new(seed).shuffle(&mut order);
        let n = if drop_last {
            order.len() - order.len() % batch_size
        } else {
            order.len()
        };
        Ok((0..n).step_by(batch_size).map(move |start| {
            let end = (start + batch_size).min(order.len());
            self.batch(&order[start..end])
        }))
    }
}

/// Shows the shapes, not the values, which would fill a screen.
impl<T: Element> fmt::Debug for Dataset<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field(
                "x",
                &format_args!("Tensor<{}>{:?}", T::DTYPE, self.x.shape()),
            )
            .field("len", &self.len())
            .field("classes", &self.classes)
            .finish()
    }
}

/// A train/test split of one dataset, as returned by [`digits`].
#[derive(Clone)]
pub struct Split<T> {
    /// The training samples.
    pub train: Dataset<T>,
    /// The held-out samples.
    pub test: Dataset<T>,
    /// For each training row, its position in the source data (for [`digits`]: the row of
    /// scikit-learn's `load_digits()`), so the same split can be rebuilt outside Rust.
    pub train_index: Vec<usize>,
    /// For each test row, its position in the source data.
    pub test_index: Vec<usize>,
}

impl<T: Element> fmt::Debug for Split<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("train", &self.train)
            .field("test", &self.test)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Digits
// ---------------------------------------------------------------------------------------------

/// The bundled file; its format is described in `data/README.md` and `scripts/make_digits.py`.
static DIGITS_BIN: &[u8] = include_bytes!("../data/digits.bin");

const DIGITS_MAGIC: &[u8; 8] = b"VGDIGIT1";
const DIGITS_HEADER: usize = 16;
const DIGITS_FEATURES: usize = 64;
const DIGITS_MAX_PIXEL: u8 = 16;
/// Seeds the shuffle that decides the digits split. Changing it changes the documented split.
const DIGITS_SPLIT_SEED: u64 = 1998;
/// Every fifth sample, in the order described on [`digits`], is held out: a 20% test set.
const DIGITS_TEST_EVERY: usize = 5;

/// The UCI 8×8 handwritten digits, split into train and test and standardised.
///
/// 1,797 grey-level images of the digits 0–9 written by 13 people: E. Alpaydin and
/// C. Kaynak (1998), *Optical Recognition of Handwritten Digits*, UCI Machine Learning
/// Repository, DOI 10.24432/C50P49, licensed CC BY 4.0, in scikit-learn's copy
/// (`load_digits`). The data is compiled into the crate; nothing is read at run time.
///
/// Each row of `x` is one image, 64 features: pixel (row *r*, column *c*) is feature `8r + c`.
/// Raw pixels are integers 0–16 (on-pixel counts of 4×4 blocks of a 32×32 bitmap).
///
/// # Split
///
/// Fixed, stratified, 80/20: **1,437 train, 360 test**.
///
/// 1. Shuffle the indices `0..1797` (scikit-learn's row order) with a Fisher–Yates shuffle
///    driven by this module's SplitMix64 generator, seed 1998.
/// 2. Stable-sort that shuffled list by label, so each class is a contiguous run in random
///    order.
/// 3. Positions 0, 5, 10, … of the sorted list go to the test set, the rest to train.
///
/// Each class therefore contributes a fifth of its samples, rounded up or down, to the test
/// set: test counts for digits 0–9 are 36, 36, 36, 36, 37, 36, 36, 36, 35, 36. Within each
/// split the samples are in scikit-learn's order; [`Split::train_index`] and
/// [`Split::test_index`] give those rows.
///
/// # Standardisation
///
/// For each feature *j*, the mean μⱼ and population standard deviation σⱼ (dividing by *n*,
/// as scikit-learn's `StandardScaler`) are computed on the **training split only**, and both
/// splits are mapped to (x − μⱼ) / σⱼ, so no test information leaks into the inputs. Where
/// σⱼ = 0 — pixels that are blank in every training image, such as the corners — the feature
/// is only centred (it becomes 0 everywhere). The statistics are computed in `f64`.
///
/// # Errors
/// [`Error::Format`] if the bundled file is malformed, which the crate's tests rule out.
///
/// # Example
/// ```
/// let split = vgrad::data::digits::<f32>()?;
/// assert_eq!(split.train.x.shape(), &[1437, 64]);
/// assert_eq!(split.test.x.shape(), &[360, 64]);
/// assert_eq!(split.train.classes, 10);
/// let (x, y) = split.test.batch(&[0, 1]);
/// assert_eq!(x.shape(), &[2, 64]);
/// assert!(y.iter().all(|&label| label < 10));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn digits<T: Element>() -> Result<Split<T>> {
    let raw = RawDigits::parse(DIGITS_BIN)?;
    let n = raw.labels.len();
    let f = DIGITS_FEATURES;

    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(DIGITS_SPLIT_SEED).shuffle(&mut order);
    order.sort_by_key(|&i| raw.labels[i]); // stable, so each class keeps its shuffled order
    let mut is_test = vec![false; n];
    for &i in order.iter().step_by(DIGITS_TEST_EVERY) {
        is_test[i] = true;
    }
    let (test_index, train_index): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| is_test[i]);

    let pixel = |i: usize, j: usize| f64::from(raw.pixels[i * f + j]);
    let mut mean = vec![0.0f64; f];
    let mut scale = vec![1.0f64; f];
    if !train_index.is_empty() {
        let count = train_index.len() as f64;
        for (j, (mean, scale)) in mean.iter_mut().zip(&mut scale).enumerate() {
            *mean = train_index.iter().map(|&i| pixel(i, j)).sum::<f64>() / count;
            let var = train_index
                .iter()
                .map(|&i| (pixel(i, j) - *mean).powi(2))
                .sum::<f64>()
                / count;
            // A constant feature carries no information; dividing would only make NaNs.
            if var > 0.0 {
                *scale = var.sqrt();
            }
        }
    }

    let subset = |rows: &[usize]| -> Result<Dataset<T>> {
        let mut x = Vec::with_capacity(rows.len() * f);
        for &i in rows {
            x.extend((0..f).map(|j| T::of((pixel(i, j) - mean[j]) / scale[j])));
        }
        Ok(Dataset {
            x: Tensor::from_vec(x, &[rows.len(), f])?,
            y: rows.iter().map(|&i| raw.labels[i]).collect(),
            classes: raw.classes,
        })
    };
    Ok(Split {
        train: subset(&train_index)?,
        test: subset(&test_index)?,
        train_index,
        test_index,
    })
}

/// Parses a digits file (the format of `data/digits.bin`) into raw pixel values 0–16, in file
/// order, without splitting or standardising. Exposed for tests of the parser's checks.
///
/// # Errors
/// [`Error::Format`] if the buffer is truncated or too long, has the wrong magic or feature
/// count, or holds a pixel above 16 or a label outside the declared classes.
#[doc(hidden)]
pub fn parse_digits<T: Element>(bytes: &[u8]) -> Result<Dataset<T>> {
    let raw = RawDigits::parse(bytes)?;
    let x = raw.pixels.iter().map(|&p| T::of(f64::from(p))).collect();
    Ok(Dataset {
        x: Tensor::from_vec(x, &[raw.labels.len(), DIGITS_FEATURES])?,
        y: raw.labels,
        classes: raw.classes,
    })
}

/// The digits file checked and unpacked: pixels row-major, `DIGITS_FEATURES` per sample.
struct RawDigits {
    pixels: Vec<u8>,
    labels: Vec<usize>,
    classes: usize,
}

impl RawDigits {
    fn parse(bytes: &[u8]) -> Result<RawDigits> {
        let bad = |msg: String| Error::Format(format!("digits data: {msg}"));
        let h = bytes.get(..DIGITS_HEADER).ok_or_else(|| {
            bad(format!(
                "{} bytes is too short for the {DIGITS_HEADER}-byte header",
                bytes.len()
            ))
        })?;
        if &h[..8] != DIGITS_MAGIC {
            return Err(bad(format!(
                "expected magic {:?}, found {:?}",
                String::from_utf8_lossy(DIGITS_MAGIC),
                String::from_utf8_lossy(&h[..8])
            )));
        }
        let n = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let features = usize::from(u16::from_le_bytes([h[12], h[13]]));
        let classes = usize::from(u16::from_le_bytes([h[14], h[15]]));
        if features != DIGITS_FEATURES {
            return Err(bad(format!(
                "expected {DIGITS_FEATURES} features (8×8 pixels), the header says {features}"
            )));
        }
        // Labels are stored as single bytes.
        if !(1..=256).contains(&classes) {
            return Err(bad(format!("{classes} classes is outside 1..=256")));
        }
        let record = features + 1;
        let expected = n
            .checked_mul(record)
            .and_then(|body| body.checked_add(DIGITS_HEADER));
        if expected != Some(bytes.len()) {
            return Err(bad(format!(
                "{n} samples of {record} bytes need {} bytes, found {}",
                expected.map_or_else(|| "more than usize::MAX".into(), |e| e.to_string()),
                bytes.len()
            )));
        }

        let mut pixels = Vec::with_capacity(n * features);
        let mut labels = Vec::with_capacity(n);
        for (i, rec) in bytes[DIGITS_HEADER..].chunks_exact(record).enumerate() {
            let (px, label) = rec.split_at(features);
            if let Some(j) = px.iter().position(|&p| p > DIGITS_MAX_PIXEL) {
                return Err(bad(format!(
                    "sample {i}, pixel {j} is {}, above {DIGITS_MAX_PIXEL}",
                    px[j]
                )));
            }
            let label = usize::from(label[0]);
            if label >= classes {
                return Err(bad(format!(
                    "sample {i} has label {label}, but there are {classes} classes"
                )));
            }
            pixels.extend_from_slice(px);
            labels.push(label);
        }
        Ok(RawDigits {
            pixels,
            labels,
            classes,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic sets
// ---------------------------------------------------------------------------------------------

fn check_noise(noise: f64) -> Result<()> {
    if noise.is_finite() && noise >= 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "noise is a standard deviation and must be finite and >= 0, got {noise}"
        )))
    }
}

/// Builds a dataset from 2-D points, jittered with Gaussian noise and shuffled, all from `rng`.
fn jitter_and_shuffle<T: Element>(
    points: Vec<([f64; 2], usize)>,
    classes: usize,
    noise: f64,
    rng: &mut SplitMix64,
) -> Result<Dataset<T>> {
    let mut points = points;
    for (p, _) in &mut points {
        p[0] += noise * rng.normal();
        p[1] += noise * rng.normal();
    }
    // Generated in class order; shuffled so that taking a prefix is not taking one class.
    rng.shuffle(&mut points);
    let n = points.len();
    let x = Tensor::try_from_fn_named("dataset", &[n, 2], |i| T::of(points[i / 2].0[i % 2]))?;
    let mut y = Vec::new();
    y.try_reserve_exact(n).map_err(|_| Error::Alloc {
        shape: vec![n],
        bytes: n.saturating_mul(std::mem::size_of::<usize>()),
    })?;
    y.extend(points.iter().map(|&(_, label)| label));
    Ok(Dataset { x, y, classes })
}

/// `m` evenly spaced values from 0 to 1 inclusive (NumPy's `linspace(0, 1, m)`).
fn unit_linspace(i: usize, m: usize) -> f64 {
    if m > 1 {
        i as f64 / (m - 1) as f64
    } else {
        0.0
    }
}

/// Two interleaving half circles in 2-D, two classes: scikit-learn's `make_moons`.
///
/// Class 0 is the upper half circle (cos t, sin t) and class 1 the lower one
/// (1 − cos t, ½ − sin t), with t evenly spaced over [0, π] within each moon; class 0 gets
/// `n / 2` points (rounded down) and class 1 the rest. Gaussian noise with standard deviation
/// `noise` is added to each coordinate (0.1 gives a set a linear model cannot separate but a
/// small MLP can), then the samples are shuffled. The same `n`, `noise` and `seed` give the
/// same dataset.
///
/// # Errors
/// [`Error::Config`] if `noise` is negative or not finite; [`Error::Alloc`] if `n` points do
/// not fit in memory.
///
/// # Example
/// ```
/// let moons = vgrad::data::two_moons::<f64>(100, 0.1, 42)?;
/// assert_eq!(moons.x.shape(), &[100, 2]);
/// assert_eq!(moons.classes, 2);
/// assert_eq!(moons.y.iter().filter(|&&label| label == 1).count(), 50);
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn two_moons<T: Element>(n: usize, noise: f64, seed: u64) -> Result<Dataset<T>> {
    check_noise(noise)?;
    let (n0, n1) = (n / 2, n - n / 2);
    let pi = std::f64::consts::PI;
    let upper = (0..n0).map(|i| {
        let t = pi * unit_linspace(i, n0);
        ([libm::cos(t), libm::sin(t)], 0)
    });
    let lower = (0..n1).map(|i| {
        let t = pi * unit_linspace(i, n1);
        ([1.0 - libm::cos(t), 0.5 - libm::sin(t)], 1)
    });
    let mut points = reserve_points(n)?;
    points.extend(upper.chain(lower));
    jitter_and_shuffle(points, 2, noise, &mut SplitMix64::new(seed))
}

/// Interleaved spiral arms in 2-D, one arm per class (the spiral set of Stanford's CS231n).
///
/// Arm k has `n_per_class` points at radii r = 1/n, 2/n, …, 1 (n = `n_per_class`) and angles
/// θ = 2πk / `classes` + 4r: each arm turns through 4 radians, and at any radius the arms are
/// evenly spaced around the circle. Gaussian noise with standard deviation `noise` is added
/// to each coordinate (0.05 keeps the arms distinct), then the samples are shuffled. The same
/// arguments give the same dataset.
///
/// # Errors
/// [`Error::Config`] if `classes` is 0, or `noise` is negative or not finite;
/// [`Error::Shape`] or [`Error::Alloc`] if the number of points overflows or does not fit in
/// memory.
///
/// # Example
/// ```
/// let spiral = vgrad::data::spirals::<f32>(50, 3, 0.05, 1)?;
/// assert_eq!(spiral.x.shape(), &[150, 2]);
/// assert_eq!(spiral.classes, 3);
/// assert!(spiral.y.iter().all(|&label| label < 3));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn spirals<T: Element>(
    n_per_class: usize,
    classes: usize,
    noise: f64,
    seed: u64,
) -> Result<Dataset<T>> {
    if classes == 0 {
        return Err(Error::Config("spirals needs at least one class".into()));
    }
    check_noise(noise)?;
    let tau = std::f64::consts::TAU;
    let n = n_per_class.checked_mul(classes).ok_or_else(|| {
        Error::Shape(format!(
            "spirals: {n_per_class} points times {classes} classes overflows"
        ))
    })?;
    let mut points = reserve_points(n)?;
    points.extend((0..classes).flat_map(|k| {
        (1..=n_per_class).map(move |i| {
            let r = i as f64 / n_per_class as f64;
            let theta = tau * k as f64 / classes as f64 + 4.0 * r;
            ([r * libm::cos(theta), r * libm::sin(theta)], k)
        })
    }));
    jitter_and_shuffle(points, classes, noise, &mut SplitMix64::new(seed))
}

/// Room for `n` generated points, reserved fallibly: a count too large for memory is an error,
/// not an abort.
fn reserve_points(n: usize) -> Result<Vec<([f64; 2], usize)>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::Alloc {
        shape: vec![n, 2],
        bytes: n.saturating_mul(std::mem::size_of::<([f64; 2], usize)>()),
    })?;
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea and Flood, 2014; the constants of Vigna's reference C code).
///
/// Statistically sound for shuffling and jitter, not for cryptography; chosen because it is a
/// few lines with a fixed, well-known output stream (see the module docs on randomness).
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`, without the bias of `next_u64() % n`: Lemire's multiply-shift,
    /// rejecting the few low products that would over-represent some outputs.
    ///
    /// `n` must be positive.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal, by Box–Muller. The second variate of each pair is discarded: it saves
    /// carrying state, and the generators here draw a few thousand values at most.
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // in (0, 1], so the log is finite
        let u2 = self.uniform();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(std::f64::consts::TAU * u2)
    }

    /// Fisher–Yates, from the back: `items[i]` swaps with a uniform pick from `items[..=i]`.
    pub(crate) fn shuffle<U>(&mut self, items: &mut [U]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // First outputs of Vigna's splitmix64.c seeded with 0 (also checked in Python).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn below_stays_in_range_and_hits_every_value() {
        let mut rng = SplitMix64::new(3);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[rng.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..100).collect();
        SplitMix64::new(9).shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = SplitMix64::new(5);
        let z: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / z.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }
}
