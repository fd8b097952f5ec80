//! safetensors checkpoints: interchange with PyTorch, bit-exact round trips, and a loader that
//! answers every malformed file with an error, never a panic and never a half-loaded model.
//!
//! Provenance: `tests/golden/mlp.safetensors`, `mlp.json` and `bn.safetensors` are written by
//! `tests/golden/ckpt_gen.py` with torch's own `safetensors.torch.save_file`. The round-trip
//! test also writes `target/tmp/vgrad_mlp.safetensors` and `vgrad_mlp.json`, which
//! `ckpt_gen.py --verify` loads into torch (strict `load_state_dict`) to check the other
//! direction by hand.

// Checkpoints need the `safetensors` feature (on by default).
#![cfg(feature = "safetensors")]

use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use vgrad::nn::{
    load_optimizer_bytes, load_safetensors, load_safetensors_bytes, save_optimizer_bytes,
    save_safetensors, save_safetensors_bytes, Activation, Adam, AdamConfig, Ctx, Linear,
    LinearConfig, Module, Optimizer, Param, Sequential, Visitor, VisitorMut,
};
use vgrad::{Element, Error, Tape, Tensor, Var};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

fn mlp<T: Element>(seed: u64) -> Sequential<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    Sequential::new()
        .push(Linear::new(4, 8, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(8, 3, &mut rng).unwrap())
}

fn tensor<T: Element>(v: &Value) -> Tensor<T> {
    let data = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| T::of(x.as_f64().unwrap()))
        .collect();
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    Tensor::from_vec(data, &shape).unwrap()
}

fn forward<T: Element>(m: &mut dyn Module<T>, x: &Tensor<T>) -> Tensor<T> {
    let tape = Tape::new();
    tape.set_grad_enabled(false);
    let mut ctx = Ctx::new(&tape);
    m.forward(&mut ctx, tape.constant(x.clone())).value()
}

/// Every tensor of the state dict as raw bits, for exact comparisons.
fn bits<T: Element>(m: &dyn Module<T>) -> Vec<(String, Vec<u64>)> {
    m.state_dict()
        .into_iter()
        .map(|(n, t)| {
            let b = t
                .data()
                .iter()
                .map(|x| x.to_f64().unwrap().to_bits())
                .collect();
            (n, b)
        })
        .collect()
}

/// A fresh, empty directory under cargo's per-target temporary directory.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ckpt-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// Interchange with PyTorch

#[test]
fn torch_checkpoint_reproduces_torch_outputs() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{GOLDEN}/mlp.json")).unwrap())
            .unwrap();
    // f32 model: same dtype as the file.
    let mut m = mlp::<f32>(0);
    load_safetensors(&mut m, format!("{GOLDEN}/mlp.safetensors")).unwrap();
    let y = forward(&mut m, &tensor(&doc["x"]));
    let expected = tensor::<f32>(&doc["y"]);
    // Same weights and inputs; only summation order differs from torch's f32 kernels.
    assert!(y.allclose(&expected, 1e-5, 1e-6), "{y:?}\n{expected:?}");

    // f64 model: F32 → f64 conversion is exact, the maths is then more precise than torch's.
    let mut m = mlp::<f64>(0);
    load_safetensors(&mut m, format!("{GOLDEN}/mlp.safetensors")).unwrap();
    let y = forward(&mut m, &tensor(&doc["x"]));
    assert!(y.allclose(&tensor(&doc["y"]), 1e-5, 1e-6));
}

#[test]
fn round_trip_is_bit_identical_and_deterministic() {
    let dir = scratch_dir("round-trip");
    fn check<T: Element>(dir: &Path) {
        let original = mlp::<T>(1);
        let path = dir.join(format!("mlp-{}.safetensors", T::DTYPE));
        save_safetensors(&original, &path).unwrap();
        let mut copy = mlp::<T>(2);
        assert_ne!(bits(&copy), bits(&original));
        load_safetensors(&mut copy, &path).unwrap();
        assert_eq!(bits(&copy), bits(&original));
        // Saving the loaded copy produces the same bytes: the format is deterministic.
        assert_eq!(
            save_safetensors_bytes(&copy).unwrap(),
            std::fs::read(&path).unwrap()
        );
    }
    check::<f32>(&dir);
    check::<f64>(&dir);

    // For `ckpt_gen.py --verify`: a vgrad-written file plus vgrad's outputs on torch's input.
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{GOLDEN}/mlp.json")).unwrap())
            .unwrap();
    let mut m = mlp::<f32>(3);
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    save_safetensors(&m, tmp.join("vgrad_mlp.safetensors")).unwrap();
    let y = forward(&mut m, &tensor(&doc["x"]));
    let out = serde_json::json!({
        "x": doc["x"],
        "y": {"shape": y.shape(), "data": y.to_vec()},
    });
    std::fs::write(tmp.join("vgrad_mlp.json"), out.to_string()).unwrap();
}

#[test]
fn f64_file_loads_into_f32_model_rounded() {
    let src = mlp::<f64>(4);
    let mut dst = mlp::<f32>(5);
    load_safetensors_bytes(&mut dst, &save_safetensors_bytes(&src).unwrap()).unwrap();
    for ((n1, a), (n2, b)) in src.state_dict().iter().zip(dst.state_dict()) {
        assert_eq!(n1, &n2);
        let rounded: Vec<f32> = a.data().iter().map(|&x| x as f32).collect();
        assert_eq!(b.data(), rounded.as_slice());
    }
}

/// A stand-in with BatchNorm's state-dict layout (the real layer lives elsewhere): parameters
/// `weight`, `bias`; buffers `running_mean`, `running_var`, `num_batches_tracked`.
#[derive(Clone)]
struct BnState<T: Element> {
    weight: Param<T>,
    bias: Param<T>,
    running_mean: Tensor<T>,
    running_var: Tensor<T>,
    num_batches_tracked: Tensor<T>,
}

impl<T: Element> BnState<T> {
    fn new(n: usize) -> Self {
        BnState {
            weight: Param::new(Tensor::ones(&[n])),
            bias: Param::new(Tensor::zeros(&[n])),
            running_mean: Tensor::zeros(&[n]),
            running_var: Tensor::ones(&[n]),
            num_batches_tracked: Tensor::scalar(T::zero()),
        }
    }
}

impl<T: Element> fmt::Debug for BnState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BnState")
    }
}

impl<T: Element> Module<T> for BnState<T> {
    fn forward<'t>(&mut self, _: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        x
    }
    fn visit(&self, v: &mut dyn Visitor<T>) {
        v.param("weight", &self.weight);
        v.param("bias", &self.bias);
        v.buffer("running_mean", &self.running_mean);
        v.buffer("running_var", &self.running_var);
        v.buffer("num_batches_tracked", &self.num_batches_tracked);
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut<T>) {
        v.param("weight", &mut self.weight);
        v.param("bias", &mut self.bias);
        v.buffer("running_mean", &mut self.running_mean);
        v.buffer("running_var", &mut self.running_var);
        v.buffer("num_batches_tracked", &mut self.num_batches_tracked);
    }
}

fn bn_model<T: Element>() -> Sequential<T> {
    let mut rng = StdRng::seed_from_u64(9);
    Sequential::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(BnState::new(4))
}

#[test]
fn int64_batch_counter_maps_to_and_from_the_element_type() {
    let torch_bytes = std::fs::read(format!("{GOLDEN}/bn.safetensors")).unwrap();
    let mut m = bn_model::<f32>();
    load_safetensors_bytes(&mut m, &torch_bytes).unwrap();
    let state = m.state_dict();
    let counter = &state
        .iter()
        .find(|(n, _)| n == "1.num_batches_tracked")
        .unwrap()
        .1;
    assert_eq!(counter.item(), 3.0);
    // Running statistics moved away from their initial 0 and 1.
    let mean = &state.iter().find(|(n, _)| n == "1.running_mean").unwrap().1;
    assert!(mean.data().iter().all(|&x| x != 0.0));

    // Writing it back gives torch's dtypes, shapes and bytes for every tensor.
    let ours = save_safetensors_bytes(&m).unwrap();
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&ours).unwrap(),
        safetensors::SafeTensors::deserialize(&torch_bytes).unwrap(),
    );
    let mut names = a.names();
    names.sort();
    let mut torch_names = b.names();
    torch_names.sort();
    assert_eq!(names, torch_names);
    for name in names {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(x.dtype(), y.dtype(), "{name}");
        assert_eq!(x.shape(), y.shape(), "{name}");
        assert_eq!(x.data(), y.data(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed files: always `Error::Format`, the model untouched

/// Asserts that loading `bytes` fails with `Error::Format` whose message contains `needle`,
/// and that the model is unchanged.
fn assert_rejected(bytes: &[u8], needle: &str) {
    let mut m = mlp::<f32>(10);
    let before = bits(&m);
    match load_safetensors_bytes(&mut m, bytes) {
        Err(Error::Format(msg)) => assert!(msg.contains(needle), "`{needle}` not in: {msg}"),
        other => panic!("expected a format error containing `{needle}`, got {other:?}"),
    }
    assert_eq!(bits(&m), before, "a failed load changed the model");
}

fn valid_bytes() -> Vec<u8> {
    save_safetensors_bytes(&mlp::<f32>(11)).unwrap()
}

/// A file with the given JSON header (padded to 8 bytes as the format does) and data.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

#[test]
fn missing_key_is_an_error() {
    let mut rng = StdRng::seed_from_u64(0);
    let no_bias = Sequential::<f32>::new()
        .push(Linear::new(4, 8, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::with_config(8, 3, LinearConfig::default().no_bias(), &mut rng).unwrap());
    assert_rejected(
        &save_safetensors_bytes(&no_bias).unwrap(),
        r#"missing key(s) ["2.bias"]"#,
    );
}

#[test]
fn extra_key_is_an_error() {
    let mut rng = StdRng::seed_from_u64(0);
    let bigger = Sequential::<f32>::new()
        .push(Linear::new(4, 8, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(8, 3, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(3, 3, &mut rng).unwrap());
    assert_rejected(
        &save_safetensors_bytes(&bigger).unwrap(),
        r#"unexpected key(s) ["4.bias", "4.weight"]"#,
    );
}

#[test]
fn wrong_shape_is_an_error() {
    let mut rng = StdRng::seed_from_u64(0);
    let wider = Sequential::<f32>::new()
        .push(Linear::new(4, 9, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(9, 3, &mut rng).unwrap());
    assert_rejected(
        &save_safetensors_bytes(&wider).unwrap(),
        "`0.weight`: shape [9, 4] in the file, [8, 4] in the model",
    );
}

#[test]
fn wrong_dtype_is_an_error() {
    // The real model's tensors, with `2.bias` re-declared as F16 / I32 / I64 of matching size.
    let shapes = [
        ("0.weight", "[8,4]", 128),
        ("0.bias", "[8]", 32),
        ("2.weight", "[3,8]", 96),
    ];
    for (dtype, width) in [("F16", 2), ("I32", 4), ("I64", 8), ("BF16", 2)] {
        let mut entries = Vec::new();
        let mut off = 0;
        for (name, shape, len) in shapes {
            entries.push(format!(
                r#""{name}":{{"dtype":"F32","shape":{shape},"data_offsets":[{off},{}]}}"#,
                off + len
            ));
            off += len;
        }
        entries.push(format!(
            r#""2.bias":{{"dtype":"{dtype}","shape":[3],"data_offsets":[{off},{}]}}"#,
            off + 3 * width
        ));
        let bytes = file(
            &format!("{{{}}}", entries.join(",")),
            &vec![0; off + 3 * width],
        );
        assert_rejected(&bytes, &format!("`2.bias`: dtype {dtype} is not supported"));
    }
}

#[test]
fn truncated_files_are_errors() {
    let good = valid_bytes();
    let h = header_len(&good);
    for keep in [
        0,
        1,
        7,
        8,
        9,
        8 + h / 2,
        8 + h,
        good.len() / 2,
        good.len() - 1,
    ] {
        let mut m = mlp::<f32>(10);
        let before = bits(&m);
        let err = load_safetensors_bytes(&mut m, &good[..keep]).unwrap_err();
        assert!(matches!(err, Error::Format(_)), "{keep}: {err:?}");
        assert_eq!(bits(&m), before);
    }
    assert_rejected(&good[..5], "too short");
    // The last tensor now ends past the data.
    assert_rejected(&good[..good.len() - 1], "past the end of the");
}

#[test]
fn header_length_beyond_the_file_is_an_error() {
    let mut bytes = valid_bytes();
    for claimed in [bytes.len() as u64, u64::MAX, 1 << 40] {
        bytes[..8].copy_from_slice(&claimed.to_le_bytes());
        assert_rejected(&bytes, &format!("the header claims {claimed} bytes"));
    }
}

#[test]
fn garbage_header_is_an_error() {
    assert_rejected(&file("{not json at all", &[]), "not valid JSON");
    assert_rejected(&file("[1, 2, 3]", &[]), "not a JSON object");
    assert_rejected(&file("\u{0}\u{1}\u{2}", &[]), "not valid JSON");
    // Valid JSON, wrong structure.
    assert_rejected(
        &file(r#"{"0.weight": {"dtype": "F32"}}"#, &[]),
        "not a valid safetensors file",
    );
    // Invalid UTF-8 in the header.
    let mut bytes = file("{}      ", &[]);
    bytes[9] = 0xff;
    assert_rejected(&bytes, "not valid JSON");
}

#[test]
fn inconsistent_offsets_are_errors() {
    // Offsets past the data.
    assert_rejected(
        &file(
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8000000000]}}"#,
            &[0; 8],
        ),
        "past the end",
    );
    // Size disagrees with the shape.
    assert_rejected(
        &file(
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
            &[0; 8],
        ),
        "not a valid safetensors file",
    );
    // Trailing bytes not covered by any tensor.
    assert_rejected(
        &file(
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 12],
        ),
        "not a valid safetensors file",
    );
    // A shape whose element count overflows.
    assert_rejected(
        &file(
            r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#,
            &[],
        ),
        "not a valid safetensors file",
    );
}

#[test]
fn unreadable_path_is_an_io_error_naming_it() {
    let mut m = mlp::<f32>(0);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no/such/file.safetensors");
    match load_safetensors(&mut m, &path) {
        Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzzing the loader

/// Replaces the `k`-th run of digits in the header with `value` and fixes the length prefix,
/// so the result is still a well-framed file with one number (a shape or an offset) changed.
fn edit_header_number(bytes: &[u8], k: usize, value: u64) -> Vec<u8> {
    let h = header_len(bytes);
    let header = std::str::from_utf8(&bytes[8..8 + h]).unwrap();
    let mut runs = Vec::new();
    let mut start = None;
    for (i, c) in header.char_indices() {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    let (s, e) = runs[k % runs.len()];
    let new_header = format!("{}{}{}", &header[..s], value, &header[e..]);
    let mut out = (new_header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(new_header.as_bytes());
    out.extend_from_slice(&bytes[8 + h..]);
    out
}

#[derive(Clone, Debug)]
enum Mutation {
    Random(Vec<u8>),
    Flip(Vec<(usize, u8)>),
    Insert(usize, Vec<u8>),
    Truncate(usize),
    Number(usize, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..700).prop_map(Mutation::Random),
        proptest::collection::vec((any::<usize>(), 1..=255u8), 1..6).prop_map(Mutation::Flip),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            prop_oneof![0..600u64, any::<u64>(), Just(u64::MAX), Just(1 << 61)]
        )
            .prop_map(|(k, v)| Mutation::Number(k, v)),
    ]
}

fn apply(valid: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = valid.to_vec();
    match m {
        Mutation::Random(r) => return r.clone(),
        Mutation::Flip(flips) => {
            for &(i, x) in flips {
                let n = b.len();
                b[i % n] ^= x;
            }
        }
        Mutation::Insert(i, extra) => {
            let at = i % (b.len() + 1);
            b.splice(at..at, extra.iter().copied());
        }
        Mutation::Truncate(n) => b.truncate(n % b.len()),
        Mutation::Number(k, v) => return edit_header_number(&b, *k, *v),
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Whatever the bytes, loading returns (proptest reports a panic as a failure), and an
    /// `Err` leaves the model exactly as it was.
    #[test]
    fn loader_never_panics_and_never_half_loads(m in mutation()) {
        let valid = valid_bytes();
        let bytes = apply(&valid, &m);
        let mut model = mlp::<f32>(10);
        let before = bits(&model);
        match load_safetensors_bytes(&mut model, &bytes) {
            Ok(()) => {
                // Only data bytes changed (or nothing did): same names and shapes.
                let after = model.state_dict();
                prop_assert_eq!(after.len(), before.len());
            }
            Err(e) => {
                prop_assert!(matches!(e, Error::Format(_)), "{:?}", e);
                prop_assert_eq!(bits(&model), before);
            }
        }
    }
}

/// An Adam state file for `mlp(10)` after two steps, the model and the optimiser that wrote it.
fn adam_state_bytes() -> (Sequential<f32>, Adam<f32>, Vec<u8>) {
    let mut model = mlp::<f32>(10);
    let mut opt = Adam::new(AdamConfig::default()).unwrap();
    for _ in 0..2 {
        adam_step(&mut model, &mut opt);
    }
    let bytes = save_optimizer_bytes(&opt, &model).unwrap();
    (model, opt, bytes)
}

/// One training step of `model` with `opt` on a fixed input.
fn adam_step(model: &mut Sequential<f32>, opt: &mut Adam<f32>) {
    let x = Tensor::from_fn(&[5, 4], |i| (i as f32 * 0.37).sin());
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let loss = model.forward(&mut ctx, tape.constant(x)).square().mean();
    opt.backward_step(model, &ctx, loss).unwrap();
}

/// An optimiser's whole state as comparable values: hyperparameters and steps as text, each
/// buffer as raw bits.
fn state_bits(opt: &Adam<f32>, model: &Sequential<f32>) -> (String, Vec<(String, Vec<u32>)>) {
    let s = opt.state_dict(model).unwrap();
    let scalars = format!("{} {:?} {:?}", s.kind, s.hyper, s.steps);
    let buffers = s.buffers.iter().map(|(k, t)| {
        let b = t.data().iter().map(|x| x.to_bits()).collect();
        (k.clone(), b)
    });
    (scalars, buffers.collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The same for an optimiser state file: loading returns, and an `Err` (a malformed file,
    /// or hyperparameters the constructor would refuse) leaves the optimiser as it was.
    #[test]
    fn optimizer_loader_never_panics_and_never_half_loads(m in mutation()) {
        let (mut model, mut opt, valid) = adam_state_bytes();
        let bytes = apply(&valid, &m);
        let before = state_bits(&opt, &model);
        match load_optimizer_bytes(&mut opt, &model, &bytes) {
            Ok(()) => {
                // Same buffer names (only values, or nothing, changed), and the loaded state
                // trains: a corrupted count or value must not panic the next step.
                let names = |b: &[(String, Vec<u32>)]| b.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
                prop_assert_eq!(names(&state_bits(&opt, &model).1), names(&before.1));
                adam_step(&mut model, &mut opt);
            }
            Err(e) => {
                prop_assert!(matches!(e, Error::Format(_) | Error::Config(_)), "{:?}", e);
                prop_assert_eq!(state_bits(&opt, &model), before);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Atomic saving

#[test]
fn saving_over_an_existing_file_replaces_it_and_leaves_no_temp_files() {
    let dir = scratch_dir("overwrite");
    let path = dir.join("model.safetensors");
    let a = mlp::<f32>(20);
    let b = mlp::<f32>(21);
    save_safetensors(&a, &path).unwrap();
    save_safetensors(&b, &path).unwrap();
    assert_eq!(dir_listing(&dir), ["model.safetensors"]);
    let mut loaded = mlp::<f32>(22);
    load_safetensors(&mut loaded, &path).unwrap();
    assert_eq!(bits(&loaded), bits(&b));
}

#[test]
fn failed_saves_leave_the_old_file_and_no_temp_files() {
    let dir = scratch_dir("failed-save");
    // A save that fails while encoding: a batch counter that is not a whole number.
    let path = dir.join("bn.safetensors");
    let mut m = bn_model::<f32>();
    save_safetensors(&m, &path).unwrap();
    let old = std::fs::read(&path).unwrap();
    struct SetCounter;
    impl VisitorMut<f32> for SetCounter {
        fn param(&mut self, _: &str, _: &mut Param<f32>) {}
        fn buffer(&mut self, name: &str, b: &mut Tensor<f32>) {
            if name == "num_batches_tracked" {
                *b = Tensor::scalar(2.5);
            }
        }
    }
    m.visit_mut(&mut SetCounter);
    let err = save_safetensors(&m, &path).unwrap_err();
    assert!(matches!(err, Error::Format(_)), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), old);

    // A save that fails at the rename: the target is a directory.
    let target = dir.join("is_a_dir.safetensors");
    std::fs::create_dir(&target).unwrap();
    match save_safetensors(&mlp::<f32>(0), &target) {
        Err(Error::Io { path, .. }) => assert_eq!(path, target),
        other => panic!("{other:?}"),
    }
    assert!(target.is_dir());
    // A save into a directory that does not exist fails before creating anything.
    let missing = dir.join("missing/model.safetensors");
    assert!(matches!(
        save_safetensors(&mlp::<f32>(0), &missing),
        Err(Error::Io { .. })
    ));
    assert_eq!(
        dir_listing(&dir),
        ["bn.safetensors", "is_a_dir.safetensors"]
    );
}

#[test]
fn stale_temp_files_of_the_target_are_removed_by_the_next_save() {
    let dir = scratch_dir("stale-temps");
    let target = "model.safetensors";
    // A process that has exited (reaped, so no /proc entry) and one beyond any pid_max.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let ours = std::process::id();
    let stale = [
        format!(".{target}.{dead}-0.tmp"),
        format!(".{target}.{dead}-17.tmp"),
        format!(".{target}.4000000000-3.tmp"),
        // Our pid's naming, but no save of ours is writing it (a killed process that had
        // our pid, or a counter we never reached).
        format!(".{target}.{ours}-987654321.tmp"),
    ];
    let kept = [
        // Another target's leftovers, and names that only look alike.
        format!(".other.safetensors.{dead}-0.tmp"),
        format!(".{target}.backup"),
        format!(".{target}.{dead}-x.tmp"),
        format!(".{target}.5-6.{dead}-0.tmp"),
        format!("{target}.{dead}-0.tmp"),
        "notes.txt".to_string(),
    ];
    // A live process's file (pid 1 is always alive) stays: it may be writing it.
    #[cfg(target_os = "linux")]
    let kept = [kept.to_vec(), vec![format!(".{target}.1-0.tmp")]].concat();
    for name in stale.iter().chain(&kept) {
        std::fs::write(dir.join(name), b"partial").unwrap();
    }
    save_safetensors(&mlp::<f32>(1), dir.join(target)).unwrap();
    let mut expected: Vec<String> = kept.to_vec();
    expected.push(target.to_string());
    expected.sort();
    assert_eq!(dir_listing(&dir), expected);
}

/// A module with one parameter under a name the caller chooses.
#[derive(Clone, Debug)]
struct Named(&'static str, Param<f32>);

impl Module<f32> for Named {
    fn forward<'t>(&mut self, _: &mut Ctx<'t, f32>, x: Var<'t, f32>) -> Var<'t, f32> {
        x
    }
    fn visit(&self, v: &mut dyn Visitor<f32>) {
        v.param(self.0, &self.1);
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut<f32>) {
        v.param(self.0, &mut self.1);
    }
}

#[test]
fn the_reserved_metadata_name_is_refused_at_save() {
    let m = Named("__metadata__", Param::new(Tensor::ones(&[2])));
    let dir = scratch_dir("reserved");
    let path = dir.join("m.safetensors");
    for err in [
        save_safetensors_bytes(&m).unwrap_err(),
        save_safetensors(&m, &path).unwrap_err(),
    ] {
        assert!(matches!(err, Error::Format(_)), "{err:?}");
        assert!(err.to_string().contains("`__metadata__`"), "{err}");
        assert!(err.to_string().contains("reserves"), "{err}");
    }
    assert!(dir_listing(&dir).is_empty());
    // Names that only contain it are ordinary names, and round-trip.
    for name in ["__metadata___", "x__metadata__", "__METADATA__"] {
        let m = Named(
            name,
            Param::new(Tensor::from_vec(vec![1.5, -2.0], &[2]).unwrap()),
        );
        let bytes = save_safetensors_bytes(&m).unwrap();
        let mut back = Named(name, Param::new(Tensor::zeros(&[2])));
        load_safetensors_bytes(&mut back, &bytes).unwrap();
        assert_eq!(back.1.value().data(), m.1.value().data());
    }
}

/// `bn_model`'s tensors (all zero) in a file whose batch counter is `counter_dtype` with
/// `counter_bytes`.
fn bn_file(counter_dtype: &str, counter_bytes: &[u8]) -> Vec<u8> {
    let tensors = [
        ("0.weight", "[4,3]", 12),
        ("0.bias", "[4]", 4),
        ("1.weight", "[4]", 4),
        ("1.bias", "[4]", 4),
        ("1.running_mean", "[4]", 4),
        ("1.running_var", "[4]", 4),
    ];
    let mut entries = Vec::new();
    let mut off = 0;
    for (name, shape, n) in tensors {
        entries.push(format!(
            r#""{name}":{{"dtype":"F32","shape":{shape},"data_offsets":[{off},{}]}}"#,
            off + 4 * n
        ));
        off += 4 * n;
    }
    entries.push(format!(
        r#""1.num_batches_tracked":{{"dtype":"{counter_dtype}","shape":[],"data_offsets":[{off},{}]}}"#,
        off + counter_bytes.len()
    ));
    let mut data = vec![0; off];
    data.extend_from_slice(counter_bytes);
    file(&format!("{{{}}}", entries.join(",")), &data)
}

#[test]
fn a_batch_counter_that_could_not_be_saved_is_refused_at_load() {
    use rand::RngExt;
    let mut rng = StdRng::seed_from_u64(16);
    let mut bad: Vec<f64> = vec![
        2.5,
        -0.5,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        -3e9,
        9.3e18,
        1e30,
        f64::MAX,
        f32::MAX as f64,
        2f64.powi(63),
    ];
    for _ in 0..40 {
        let whole: f64 = rng.random_range(0..1_000_000) as f64;
        bad.push(whole + rng.random_range(0.001..0.999)); // fractional
        bad.push(-(whole + 1.0)); // negative
        bad.push(2f64.powi(rng.random_range(63..1000))); // too large for int64
    }
    let (mut tried, mut refused) = (0, 0);
    for &v in &bad {
        let mut files = vec![bn_file("F64", &v.to_le_bytes())];
        let as_f32 = v as f32;
        // The f32 rounding of the value, where it is still not a count.
        if !(as_f32.fract() == 0.0 && as_f32 >= 0.0 && (as_f32 as f64) < 2f64.powi(63)) {
            files.push(bn_file("F32", &as_f32.to_le_bytes()));
        }
        for bytes in files {
            for load in [load_bn::<f32>, load_bn::<f64>] {
                tried += 1;
                let err = load(&bytes).unwrap_err();
                assert!(matches!(err, Error::Format(_)), "{v}: {err:?}");
                assert!(err.to_string().contains("num_batches_tracked"), "{err}");
                refused += 1;
            }
        }
    }
    // Int64 counters PyTorch could write but that are no count, or that round up to 2^63.
    for v in [-1i64, i64::MIN, i64::MAX, i64::MAX - 100] {
        for load in [load_bn::<f32>, load_bn::<f64>] {
            tried += 1;
            assert!(load(&bn_file("I64", &v.to_le_bytes())).is_err(), "{v}");
            refused += 1;
        }
    }
    // Into an f32 model, a value below 2^63 in f64 that rounds to 2^63 in f32.
    let rounds_up = (2f64.powi(63) - 2f64.powi(37)).to_le_bytes();
    assert!(load_bn::<f32>(&bn_file("F64", &rounds_up)).is_err());
    assert!(load_bn::<f64>(&bn_file("F64", &rounds_up)).is_ok());
    assert_eq!(tried, refused);

    // Counts load, and the model saves again.
    for v in [0.0, 3.0, 2f64.powi(53), 2f64.powi(62)] {
        for dtype in ["F32", "F64"] {
            let bytes = if dtype == "F32" {
                bn_file(dtype, &(v as f32).to_le_bytes())
            } else {
                bn_file(dtype, &v.to_le_bytes())
            };
            let mut m = bn_model::<f32>();
            load_safetensors_bytes(&mut m, &bytes).unwrap();
            save_safetensors_bytes(&m).unwrap();
        }
    }
}

/// Loads `bytes` into a fresh `bn_model`, asserting the model is unchanged on an error.
fn load_bn<T: Element>(bytes: &[u8]) -> vgrad::Result<()> {
    let mut m = bn_model::<T>();
    let before = bits(&m);
    let r = load_safetensors_bytes(&mut m, bytes);
    if r.is_err() {
        assert_eq!(bits(&m), before, "a failed load changed the model");
    }
    r
}

#[test]
fn saving_refuses_a_negative_batch_counter_as_loading_does() {
    struct SetCounter(f32);
    impl VisitorMut<f32> for SetCounter {
        fn param(&mut self, _: &str, _: &mut Param<f32>) {}
        fn buffer(&mut self, name: &str, b: &mut Tensor<f32>) {
            if name == "num_batches_tracked" {
                *b = Tensor::scalar(self.0);
            }
        }
    }
    let mut m = bn_model::<f32>();
    m.visit_mut(&mut SetCounter(-1.0));
    let err = save_safetensors_bytes(&m).unwrap_err();
    assert!(err.to_string().contains("num_batches_tracked"), "{err}");
}
