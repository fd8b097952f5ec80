//! Adversarial cases: checkpoint files (issue 16, items 3 and 9).
//!
//! Every generated file goes into both loaders (model and optimiser state), from bytes and
//! from a path. Each must answer `Err` (never a panic, never `Ok`), leave the model and the
//! optimiser exactly as they were, and peak within a small multiple of the file's size while
//! refusing it: [`BOUND`] times the size plus [`SLACK`].

// Checkpoints need the `safetensors` feature (on by default).
#![cfg(feature = "safetensors")]

use crate::meter::peak_during;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use vgrad::nn::{
    load_optimizer, load_optimizer_bytes, load_safetensors, load_safetensors_bytes,
    save_optimizer_bytes, save_safetensors_bytes, Activation, Adam, AdamConfig, BatchNorm1d, Ctx,
    Linear, Module, Optimizer, Sequential,
};
use vgrad::{Error, Tape, Tensor};

/// Peak bytes allowed per byte of input while refusing it.
const BOUND: usize = 4;
/// Plus this much: the models, the optimiser and the error message.
const SLACK: usize = 64 << 10;

fn model() -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(7);
    Sequential::new()
        .push(Linear::new(4, 8, &mut rng).unwrap())
        .push(BatchNorm1d::new(8).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(8, 3, &mut rng).unwrap())
}

/// A trained Adam for `model()`.
fn adam(m: &mut Sequential<f32>) -> Adam<f32> {
    let mut opt = Adam::new(AdamConfig::default()).unwrap();
    for _ in 0..2 {
        let x = Tensor::from_fn(&[5, 4], |i| (i as f32 * 0.37).sin());
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let loss = m.forward(&mut ctx, tape.constant(x)).square().mean();
        opt.backward_step(m, &ctx, loss).unwrap();
    }
    opt
}

fn model_bits(m: &dyn Module<f32>) -> Vec<(String, Vec<u32>)> {
    let s = m.state_dict().into_iter();
    s.map(|(n, t)| (n, t.data().iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn opt_bits(opt: &Adam<f32>, m: &Sequential<f32>) -> String {
    let s = opt.state_dict(m).unwrap();
    let bufs: BTreeMap<_, Vec<u32>> = s
        .buffers
        .iter()
        .map(|(k, t)| (k.clone(), t.data().iter().map(|x| x.to_bits()).collect()))
        .collect();
    format!(
        "{} {:?} {:?} {:?} {}",
        s.kind,
        s.hyper,
        s.steps,
        bufs,
        opt.lr()
    )
}

/// A file with the given JSON header and data.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Per class: inputs tried, clear errors (`Error::Format`, or `Error::Config` for a
/// hyperparameter that parses but is out of range), panics, wrong results (an `Ok`,
/// a changed model or optimiser, another error kind), and the worst peak / size seen.
#[derive(Default, Debug)]
struct Tally {
    tried: usize,
    errors: usize,
    panics: usize,
    wrong: usize,
    worst_ratio: f64,
    /// The worst peak / size among inputs of 64 KiB or more, where the constant is negligible.
    worst_big_ratio: f64,
    worst_peak: usize,
    failures: Vec<String>,
}

struct Harness {
    model: Sequential<f32>,
    opt: Adam<f32>,
    model_before: Vec<(String, Vec<u32>)>,
    opt_before: String,
    dir: PathBuf,
    tallies: BTreeMap<&'static str, Tally>,
}

impl Harness {
    fn new(name: &str) -> Self {
        let mut model = model();
        let opt = adam(&mut model);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("adv-ckpt-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let model_before = model_bits(&model);
        let opt_before = opt_bits(&opt, &model);
        Harness {
            model,
            opt,
            model_before,
            opt_before,
            dir,
            tallies: BTreeMap::new(),
        }
    }

    /// A valid model file and a valid optimiser file for the harness's model.
    fn valid(&self) -> (Vec<u8>, Vec<u8>) {
        (
            save_safetensors_bytes(&self.model).unwrap(),
            save_optimizer_bytes(&self.opt, &self.model).unwrap(),
        )
    }

    /// Feeds `bytes` to the four loaders, expecting each to refuse it.
    fn refuse(&mut self, class: &'static str, bytes: &[u8]) {
        let path = self.dir.join("input.safetensors");
        std::fs::write(&path, bytes).unwrap();
        for loader in 0..4 {
            let (m, opt) = (&mut self.model, &mut self.opt);
            let run = || match loader {
                0 => load_safetensors_bytes(m, bytes),
                1 => load_safetensors(m, &path),
                2 => load_optimizer_bytes(opt, m, bytes),
                _ => load_optimizer(opt, m, &path),
            };
            let (outcome, peak) = peak_during(|| catch_unwind(AssertUnwindSafe(run)));
            let t = self.tallies.entry(class).or_default();
            t.tried += 1;
            let ratio = peak as f64 / bytes.len().max(1) as f64;
            if peak > t.worst_peak {
                t.worst_peak = peak;
            }
            t.worst_ratio = t.worst_ratio.max(ratio);
            if bytes.len() >= 64 << 10 {
                t.worst_big_ratio = t.worst_big_ratio.max(ratio);
            }
            let mut fail = |what: String| {
                if t.failures.len() < 5 {
                    t.failures
                        .push(format!("loader {loader}, {} bytes: {what}", bytes.len()));
                }
            };
            match outcome {
                Err(_) => {
                    t.panics += 1;
                    fail("panic".into());
                }
                Ok(Ok(())) => {
                    t.wrong += 1;
                    fail("loaded".into());
                }
                // A mutated hyperparameter that still parses (`0.999` -> `8.999`) is refused by
                // the optimiser's own validation, as a `Config` error: clear too.
                Ok(Err(Error::Format(_) | Error::Config(_))) => t.errors += 1,
                Ok(Err(e)) => {
                    t.wrong += 1;
                    fail(format!("not a format error: {e}"));
                }
            }
            if peak > BOUND * bytes.len() + SLACK {
                t.wrong += 1;
                fail(format!("peak {peak} bytes"));
            }
            if model_bits(&self.model) != self.model_before {
                t.wrong += 1;
                fail("the model changed".into());
                self.model = model();
                self.opt = adam(&mut self.model);
            }
            if opt_bits(&self.opt, &self.model) != self.opt_before {
                t.wrong += 1;
                fail("the optimiser changed".into());
                self.model = model();
                self.opt = adam(&mut self.model);
            }
        }
    }

    /// Prints the tallies (run with `--nocapture` to see them) and fails on any panic or
    /// wrong result.
    fn finish(self) {
        let mut bad = Vec::new();
        for (class, t) in &self.tallies {
            eprintln!(
                "{class:>28}: {:>5} tried, {:>5} clear errors, {} panics, {} wrong, \
                 worst peak {} bytes, worst peak/size {:.2} (inputs >= 64 KiB: {:.2})",
                t.tried,
                t.errors,
                t.panics,
                t.wrong,
                t.worst_peak,
                t.worst_ratio,
                t.worst_big_ratio
            );
            if t.panics + t.wrong > 0 {
                bad.push(format!("{class}: {:?}", t.failures));
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }
}

/// The issue's reproducer, scaled down from 128 MiB: `{"a":{"data_offsets":[0,0,0,…]}}`.
#[test]
fn a_header_of_long_offset_arrays_costs_a_small_multiple_of_its_size() {
    let mut h = Harness::new("offsets");
    for size in [4 << 10, 256 << 10, 4 << 20] {
        let zeros = vec!["0"; size / 2].join(",");
        h.refuse(
            "long offset array",
            &file(&format!(r#"{{"a":{{"data_offsets":[{zeros}]}}}}"#), &[]),
        );
        let entry = format!(r#""dtype":"F32","shape":[2],"data_offsets":[0,8,{zeros}]"#);
        h.refuse(
            "long offset array",
            &file(&format!(r#"{{"0.bias":{{{entry}}}}}"#), &[0; 8]),
        );
        // The same numbers in a shape, in an unknown field and in the metadata.
        h.refuse(
            "long shape",
            &file(
                &format!(r#"{{"a":{{"dtype":"U8","shape":[{zeros}],"data_offsets":[0,0]}}}}"#),
                &[],
            ),
        );
        let ones = vec!["1"; size / 2].join(",");
        h.refuse(
            "long shape",
            &file(
                &format!(r#"{{"a":{{"dtype":"U8","shape":[{ones}],"data_offsets":[0,1]}}}}"#),
                &[0],
            ),
        );
        h.refuse(
            "long unknown field",
            &file(&format!(r#"{{"a":{{"x":[{zeros}]}}}}"#), &[]),
        );
        h.refuse(
            "long metadata",
            &file(&format!(r#"{{"__metadata__":{{"a":[{zeros}]}}}}"#), &[]),
        );
    }
    h.finish();
}

#[test]
fn lies_in_the_header_are_refused_within_bounded_memory() {
    let mut h = Harness::new("lies");
    let mut rng = StdRng::seed_from_u64(3);
    let (valid, _) = h.valid();

    // Header lengths: beyond the file, beyond the format's limit, off by a little.
    for i in 0..40 {
        let mut b = valid.clone();
        let claimed: u64 = match i % 4 {
            0 => rng.random_range(b.len() as u64..u64::MAX),
            1 => rng.random_range(100_000_001..1 << 40),
            2 => u64::from_le_bytes(b[..8].try_into().unwrap()) + rng.random_range(1..64),
            _ => u64::from_le_bytes(b[..8].try_into().unwrap()) - rng.random_range(1..64),
        };
        b[..8].copy_from_slice(&claimed.to_le_bytes());
        h.refuse("header length", &b);
    }

    // Deep nesting, in every place a value can go.
    for depth in [64, 127, 128, 129, 1000, 100_000] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let deep_obj = format!("{}1{}", r#"{"k":"#.repeat(depth), "}".repeat(depth));
        for header in [
            format!(r#"{{"a":{deep}}}"#),
            format!(r#"{{"a":{{"dtype":"F32","shape":[],"data_offsets":[0,4],"x":{deep}}}}}"#),
            format!(r#"{{"a":{{"dtype":"F32","shape":{deep},"data_offsets":[0,4]}}}}"#),
            format!(r#"{{"__metadata__":{{"a":{deep_obj}}}}}"#),
            format!(r#"{{"a":{{"dtype":"F32","shape":[],"data_offsets":[0,4],"x":{deep_obj}}}}}"#),
            deep.clone(),
        ] {
            h.refuse("deep nesting", &file(&header, &[0; 4]));
        }
    }

    // Many tensors: unknown names, the model's names, the optimiser's names, zero-sized or
    // all pointing at the same bytes (an overlap decoded once per entry would multiply).
    for n in [100, 10_000, 60_000] {
        let entries =
            |name: &dyn Fn(usize) -> String, shape: &str, off: &dyn Fn(usize) -> (usize, usize)| {
                let v: Vec<String> = (0..n)
                    .map(|i| {
                        let (b, e) = off(i);
                        format!(
                            r#""{}":{{"dtype":"F32","shape":{shape},"data_offsets":[{b},{e}]}}"#,
                            name(i)
                        )
                    })
                    .collect();
                format!("{{{}}}", v.join(","))
            };
        let t = |i: usize| format!("t{i}");
        h.refuse("many tensors", &file(&entries(&t, "[0]", &|_| (0, 0)), &[]));
        h.refuse(
            "many tensors",
            &file(
                &entries(&t, "[1]", &|i| (4 * i, 4 * i + 4)),
                &vec![0; 4 * n],
            ),
        );
        let same = |_| (0, 32);
        h.refuse(
            "overlapping offsets",
            &file(&entries(&t, "[8]", &same), &[0; 32]),
        );
        let opt_name = |i: usize| format!("0.bias.b{i}");
        h.refuse(
            "overlapping offsets",
            &file(&entries(&opt_name, "[8]", &same), &[0; 32]),
        );
        let dup = |_| "0.bias".to_string();
        h.refuse(
            "overlapping offsets",
            &file(&entries(&dup, "[8]", &same), &[0; 32]),
        );
        let tiled = |i: usize| (32 * i, 32 * i + 32);
        let tail = format!(
            r#"{{"__metadata__":{{"optimizer":"Adam"}},{}"#,
            &entries(&opt_name, "[8]", &tiled)[1..]
        );
        h.refuse("many tensors", &file(&tail, &vec![0; 32 * n]));
        let meta: Vec<String> = (0..n)
            .map(|i| format!(r#""step.p{i}":"1","hyper.h{i}":"0.5""#))
            .collect();
        h.refuse(
            "many metadata",
            &file(
                &format!(
                    r#"{{"__metadata__":{{"optimizer":"Adam",{}}}}}"#,
                    meta.join(",")
                ),
                &[],
            ),
        );
    }

    // Offsets past the end, backwards, overlapping, leaving gaps; dtype lies; shapes whose
    // element count overflows; names and strings with escapes.
    for _ in 0..200 {
        let data_len = rng.random_range(0..64usize);
        let b = rng.random_range(0..2 * data_len as u64 + 2);
        let e = match rng.random_range(0..3) {
            0 => rng.random_range(0..u64::MAX),
            1 => b.saturating_sub(rng.random_range(1..4)),
            _ => b + rng.random_range(0..8),
        };
        let header =
            format!(r#"{{"0.bias":{{"dtype":"F32","shape":[8],"data_offsets":[{b},{e}]}}}}"#);
        h.refuse("offsets", &file(&header, &vec![0; data_len]));
    }
    for dtype in [
        "F16",
        "BF16",
        "I32",
        "U8",
        "BOOL",
        "F8_E4M3",
        "I64",
        "F64",
        "F32 ",
        "f32",
        "",
        "\\u0046\\u0033\\u0032x",
    ] {
        for width in [1, 2, 4, 8] {
            let header = format!(
                r#"{{"0.bias":{{"dtype":"{dtype}","shape":[8],"data_offsets":[0,{}]}}}}"#,
                8 * width
            );
            if dtype == "F32" && width == 4 || dtype == "F64" && width == 8 {
                continue; // truthful
            }
            h.refuse("dtype lie", &file(&header, &vec![0; 8 * width]));
        }
    }
    for _ in 0..100 {
        let dims: Vec<String> = (0..rng.random_range(2..6))
            .map(|_| rng.random_range(1u64 << 16..u64::MAX).to_string())
            .collect();
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":[{}],"data_offsets":[0,0]}}}}"#,
            dims.join(",")
        );
        h.refuse("shape overflow", &file(&header, &[]));
    }
    let long_escaped = "\\u0061".repeat(100_000);
    h.refuse(
        "escapes",
        &file(
            &format!(r#"{{"{long_escaped}":{{"dtype":"F32","shape":[],"data_offsets":[0,4]}}}}"#),
            &[0; 4],
        ),
    );
    h.refuse(
        "escapes",
        &file(
            &format!(r#"{{"__metadata__":{{"optimizer":"{long_escaped}"}}}}"#),
            &[],
        ),
    );
    h.finish();
}

#[test]
fn byte_mutations_of_real_files_are_refused_or_load_whole() {
    let mut h = Harness::new("mutations");
    let (model_file, opt_file) = h.valid();
    let mut rng = StdRng::seed_from_u64(5);
    let (mut loaded, mut tried) = (0, 0);
    for round in 0..600 {
        let base = if round % 2 == 0 {
            &model_file
        } else {
            &opt_file
        };
        let mut b = base.clone();
        match rng.random_range(0..4) {
            0 => {
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..b.len());
                    b[i] ^= rng.random_range(1..=255u8);
                }
            }
            1 => b.truncate(rng.random_range(0..b.len())),
            2 => {
                let i = rng.random_range(0..=b.len());
                let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                b.splice(i..i, junk);
            }
            _ => {
                // Within the header: swap a digit, a quote or a bracket.
                let hl = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
                let i = 8 + rng.random_range(0..hl);
                let set = b"0123456789\"[]{},:-.e";
                b[i] = set[rng.random_range(0..set.len())];
            }
        }
        // A mutation may leave a valid file (a changed data byte): those load, and are not
        // the adversary's; every other one must be refused.
        tried += 1;
        let mut m = model();
        let mut o = adam(&mut m);
        let fine = load_safetensors_bytes(&mut m, &b).is_ok()
            || load_optimizer_bytes(&mut o, &m, &b).is_ok();
        if fine {
            loaded += 1;
            continue;
        }
        h.refuse("byte mutation", &b);
    }
    eprintln!(
        "byte mutations: {tried} generated, {loaded} still valid (loaded whole), the rest refused"
    );
    h.finish();
}

/// Issue 16 item 9: a counter the saver refuses is refused by the loaders too, for generated
/// values, and the model stays as it was.
#[test]
fn generated_batch_counters_that_cannot_be_saved_are_refused() {
    let mut h = Harness::new("counters");
    let (valid, _) = h.valid();
    let mut rng = StdRng::seed_from_u64(9);
    // The valid file's counter is the last tensor: an I64 scalar. Re-declare it as F64.
    let hl = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&valid[8..8 + hl]).unwrap();
    let key = r#""1.num_batches_tracked":{"dtype":"I64""#;
    assert!(header.contains(key), "{header}");
    let header = header.replace(key, r#""1.num_batches_tracked":{"dtype":"F64""#);
    let data = &valid[8 + hl..];
    let at = {
        let v: serde_json::Value = serde_json::from_str(&header).unwrap();
        v["1.num_batches_tracked"]["data_offsets"][0]
            .as_u64()
            .unwrap() as usize
    };
    for i in 0..300 {
        let v: f64 = match i % 5 {
            0 => rng.random_range(0.0..1e6f64).floor() + rng.random_range(0.01..0.99),
            1 => [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -f64::NAN][i / 5 % 4],
            2 => -rng.random_range(1.0..1e18f64).floor(),
            3 => 2f64.powi(rng.random_range(63..1024)),
            _ => -rng.random_range(1e-300..1.0),
        };
        let mut d = data.to_vec();
        d[at..at + 8].copy_from_slice(&v.to_le_bytes());
        let bytes = file(&header, &d);
        h.refuse("batch counter", &bytes);
    }
    h.finish();
}
