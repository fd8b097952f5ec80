//! TensorBoard event files: vgrad's against one PyTorch's `SummaryWriter` wrote for the same
//! values (tests/golden/tensorboard_gen.py), the TFRecord framing and checksums read back by an
//! independent reader written here, and a monitored training run's tags.
//!
//! The reader here shares nothing with vgrad's writer: its CRC-32C is the bitwise definition
//! (vgrad's is table-driven), and its protobuf messages are declared again from TensorFlow's
//! `event.proto` and `summary.proto` (prost decodes them, skipping fields they leave out, such as
//! the `source_metadata` PyTorch adds to its first record).

#![cfg(feature = "tensorboard")]

use rand::{rngs::StdRng, SeedableRng};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use vgrad::monitor::{GradMonitor, Histogram, MonitorConfig, StepRecord, TensorBoardWriter};
use vgrad::nn::{
    mse_loss, Activation, Ctx, Linear, Module, Optimizer, Reduction, Sequential, Sgd, SgdConfig,
};
use vgrad::{Tape, Tensor};

mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        #[prost(int64, tag = "2")]
        pub step: i64,
        #[prost(string, optional, tag = "3")]
        pub file_version: Option<String>,
        #[prost(message, optional, tag = "5")]
        pub summary: Option<Summary>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<Value>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        #[prost(string, tag = "1")]
        pub tag: String,
        #[prost(float, optional, tag = "2")]
        pub simple_value: Option<f32>,
        #[prost(message, optional, tag = "5")]
        pub histo: Option<Histo>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histo {
        #[prost(double, tag = "1")]
        pub min: f64,
        #[prost(double, tag = "2")]
        pub max: f64,
        #[prost(double, tag = "3")]
        pub num: f64,
        #[prost(double, tag = "4")]
        pub sum: f64,
        #[prost(double, tag = "5")]
        pub sum_squares: f64,
        #[prost(double, repeated, tag = "6")]
        pub bucket_limit: Vec<f64>,
        #[prost(double, repeated, tag = "7")]
        pub bucket: Vec<f64>,
    }
}

/// CRC-32C by its definition, a bit at a time.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn masked(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8) // (c >> 15) | (c << 17), as the spec writes it
}

/// The records of a TFRecord file, each checked: length, its checksum, data, its checksum.
fn records(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 12)
            .ok_or(format!("truncated header at {at}"))?;
        let len_crc = u32::from_le_bytes(head[8..12].try_into().unwrap());
        if masked(&head[..8]) != len_crc {
            return Err(format!("length checksum mismatch at {at}"));
        }
        let len = u64::from_le_bytes(head[..8].try_into().unwrap()) as usize;
        let data = bytes
            .get(at + 12..at + 12 + len)
            .ok_or(format!("truncated data at {at}"))?;
        let crc = bytes
            .get(at + 12 + len..at + 16 + len)
            .ok_or(format!("truncated data checksum at {at}"))?;
        if masked(data) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(format!("data checksum mismatch at {at}"));
        }
        out.push(data);
        at += 16 + len;
    }
    Ok(out)
}

fn events(path: &Path) -> Vec<pb::Event> {
    use prost::Message;
    let bytes = std::fs::read(path).unwrap();
    let recs = records(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    recs.iter()
        .map(|r| pb::Event::decode(*r).unwrap())
        .collect()
}

/// What a value is, wall time aside.
#[derive(Debug)]
enum Val {
    Scalar(f32),
    Histo(pb::Histo),
}

/// The file's values in order, as `(step, tag, value)`, after checking that the first record is
/// the file version and no other is.
fn values(events: &[pb::Event]) -> Vec<(i64, String, Val)> {
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    let mut out = Vec::new();
    for e in &events[1..] {
        assert!(e.file_version.is_none());
        for v in &e.summary.as_ref().expect("a summary").value {
            let val = match (&v.simple_value, &v.histo) {
                (Some(x), None) => Val::Scalar(*x),
                (None, Some(h)) => Val::Histo(h.clone()),
                other => panic!("{}: unexpected value {other:?}", v.tag),
            };
            out.push((e.step, v.tag.clone(), val));
        }
    }
    out
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vgrad-tb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tensorboard")
}

/// Writes the golden cases with vgrad into `dir`; returns the event file.
fn write_cases(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(golden_dir().join("cases.json")).unwrap();
    let doc: Json = serde_json::from_str(&text).unwrap();
    let mut tb = TensorBoardWriter::new(dir).unwrap();
    for c in doc["calls"].as_array().unwrap() {
        let tag = c["tag"].as_str().unwrap();
        let step = c["step"].as_u64().unwrap() as usize;
        match c["kind"].as_str().unwrap() {
            "scalar" => tb
                .add_scalar(tag, c["value"].as_f64().unwrap(), step)
                .unwrap(),
            _ => {
                let v: Vec<f32> = c["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                tb.add_histogram(tag, &Histogram::of(&v).unwrap(), step)
                    .unwrap()
            }
        }
    }
    tb.path().to_path_buf()
}

#[test]
fn vgrad_writes_what_pytorch_summary_writer_writes() {
    let golden = events(&golden_dir().join("events.out.tfevents.golden"));
    let dir = temp_dir("golden");
    let ours = events(&write_cases(&dir));
    // PyTorch writes one event per call, as vgrad's add_scalar and add_histogram do.
    assert_eq!(ours.len(), golden.len());
    let (want, got) = (values(&golden), values(&ours));
    assert_eq!(got.len(), want.len());
    let mut histograms = 0;
    for ((ws, wt, wv), (gs, gt, gv)) in want.iter().zip(&got) {
        assert_eq!((gs, gt), (ws, wt));
        match (wv, gv) {
            (Val::Scalar(w), Val::Scalar(g)) => {
                assert!(close(*w as f64, *g as f64, 1e-7), "{wt}@{ws}: {g} vs {w}")
            }
            (Val::Histo(w), Val::Histo(g)) => {
                histograms += 1;
                let ctx = format!("{wt}@{ws}");
                assert_eq!(g.num, w.num, "{ctx}: num");
                assert!(
                    close(g.min, w.min, 1e-15) && close(g.max, w.max, 1e-15),
                    "{ctx}"
                );
                // numpy sums pairwise and vgrad in sixteen lanes: the order differs.
                assert!(
                    close(g.sum, w.sum, 1e-9) || (g.sum - w.sum).abs() < 1e-12,
                    "{ctx}: sum {} vs {}",
                    g.sum,
                    w.sum
                );
                assert!(
                    close(g.sum_squares, w.sum_squares, 1e-12),
                    "{ctx}: sum_squares"
                );
                assert_eq!(g.bucket_limit.len(), w.bucket_limit.len(), "{ctx}: buckets");
                for (a, b) in g.bucket_limit.iter().zip(&w.bucket_limit) {
                    assert!(close(*a, *b, 1e-15), "{ctx}: limit {a} vs {b}");
                }
                assert_eq!(g.bucket, w.bucket, "{ctx}: counts");
            }
            (w, g) => panic!("{wt}@{ws}: {g:?} where PyTorch wrote {w:?}"),
        }
    }
    assert_eq!(histograms, 15);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn records_are_framed_and_checksummed_and_a_corrupted_byte_is_caught() {
    let dir = temp_dir("crc");
    let path = write_cases(&dir);
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let parts: Vec<&str> = name.split('.').collect();
    // events.out.tfevents.<10-digit seconds>.<host>.<pid>.<n>, as TensorFlow names them.
    assert_eq!(parts[..3], ["events", "out", "tfevents"]);
    assert_eq!(parts[3].len(), 10);
    assert!(parts[3].parse::<u64>().is_ok());
    assert_eq!(parts[parts.len() - 2], std::process::id().to_string());
    let bytes = std::fs::read(&path).unwrap();
    let n = records(&bytes).unwrap().len();
    assert_eq!(n, 1 + 3 * 9);
    // Every byte of the second record (header, length checksum, data, data checksum) is covered.
    let first = 16 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let second = 16 + u64::from_le_bytes(bytes[first..first + 8].try_into().unwrap()) as usize;
    for at in first..first + second {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        assert!(records(&bad).is_err(), "byte {at} flipped went unnoticed");
    }
    assert!(records(&bytes[..bytes.len() - 1]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_writer_in_one_directory_gets_its_own_file() {
    let dir = temp_dir("two");
    let a = TensorBoardWriter::new(&dir).unwrap();
    let b = TensorBoardWriter::new(&dir).unwrap();
    assert_ne!(a.path(), b.path());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_log_dir_that_cannot_be_made_is_an_io_error_naming_it() {
    let dir = temp_dir("file");
    std::fs::create_dir_all(&dir).unwrap();
    let blocker = dir.join("not_a_dir");
    std::fs::write(&blocker, "x").unwrap();
    let err = TensorBoardWriter::new(blocker.join("run")).unwrap_err();
    assert!(matches!(err, vgrad::Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("not_a_dir"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Trains a small net for three steps with a monitor writing to `dir`.
fn monitored_run(dir: &Path, histograms: bool) -> Vec<StepRecord> {
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = Sequential::<f32>::new()
        .push(Linear::new(4, 8, &mut rng).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(8, 8, &mut rng).unwrap())
        .push(Activation::Sigmoid)
        .push(Linear::new(8, 2, &mut rng).unwrap());
    let x = Tensor::from_fn(&[5, 4], |i| ((i * 7) % 11) as f32 / 5.0 - 1.0);
    let y = Tensor::from_fn(&[5, 2], |i| (i % 3) as f32 / 2.0);
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    })
    .unwrap();
    let mut mon = GradMonitor::new(MonitorConfig {
        histograms,
        ..MonitorConfig::default()
    });
    mon.attach_tensorboard(TensorBoardWriter::new(dir).unwrap());
    for step in 0..3 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let out = net.forward(&mut ctx, tape.constant(x.clone()));
        let loss = mse_loss(out, y.clone(), Reduction::Mean);
        let grads = mon.backward(&ctx, &net, loss);
        // Written through at once, so a reader (TensorBoard, live) sees the step now.
        let path = mon.tensorboard().unwrap().path().to_path_buf();
        let seen = values(&events(&path));
        assert!(seen
            .iter()
            .any(|(s, t, _)| *s == step as i64 && t == "grad_norm/0"));
        opt.step(&mut net, &grads).unwrap();
        mon.tensorboard()
            .unwrap()
            .add_scalar("lr", 0.1, step)
            .unwrap();
        mon.tensorboard_status().unwrap();
    }
    mon.after_update(&net);
    mon.tensorboard_status().unwrap();
    mon.steps().to_vec()
}

fn event_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    files.pop().unwrap()
}

#[test]
fn a_monitored_run_writes_every_tag_at_every_step() {
    let dir = temp_dir("monitor");
    let steps = monitored_run(&dir, true);
    let got = values(&events(&event_file(&dir)));
    let mut by_step: BTreeMap<i64, BTreeMap<String, &Val>> = BTreeMap::new();
    for (s, t, v) in &got {
        assert!(
            by_step
                .entry(*s)
                .or_default()
                .insert(t.clone(), v)
                .is_none(),
            "{t}@{s} twice"
        );
    }
    let mut want: BTreeSet<String> = ["loss", "lr"].map(String::from).into();
    for l in ["0", "2", "4"] {
        for p in ["grad_norm", "update_ratio", "grad", "activation"] {
            want.insert(format!("{p}/{l}"));
        }
    }
    want.insert("dead_fraction/0".into());
    want.insert("saturated_fraction/2".into());
    assert_eq!(by_step.len(), 3);
    for (s, rec) in steps.iter().enumerate() {
        let tags = &by_step[&(s as i64)];
        assert_eq!(
            tags.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "step {s}"
        );
        let scalar = |t: &str| match tags[t] {
            Val::Scalar(x) => *x as f64,
            v => panic!("{t}: {v:?}"),
        };
        let histo = |t: &str| match tags[t] {
            Val::Histo(h) => h,
            v => panic!("{t}: {v:?}"),
        };
        let f32_close = |a: f64, b: f64| close(a, b, 1e-6);
        assert!(f32_close(scalar("loss"), rec.loss.unwrap()));
        for l in &rec.layers {
            let n = &l.name;
            assert!(f32_close(
                scalar(&format!("grad_norm/{n}")),
                l.weight_grad_norm
            ));
            let r = scalar(&format!("update_ratio/{n}"));
            assert!(f32_close(r, l.update_ratio.unwrap()) && r > 0.0);
            let g = histo(&format!("grad/{n}"));
            assert_eq!(g.num as usize, l.weight_shape.iter().product::<usize>());
            assert_eq!(g.bucket.iter().sum::<f64>(), g.num);
            let sq = g.sum_squares.sqrt();
            assert!(
                close(sq, l.weight_grad_norm, 1e-9),
                "{n}: {sq} vs {}",
                l.weight_grad_norm
            );
            let a = histo(&format!("activation/{n}"));
            match &l.activation {
                Some(act) => {
                    assert!(close(a.sum / a.num, act.mean, 1e-9));
                    assert_eq!(a.num, 40.0); // 5 samples × 8 units
                }
                None => assert!(close(a.sum / a.num, l.output_mean.unwrap(), 1e-9)),
            }
        }
        let l0 = &rec.layers[0];
        assert!(f32_close(
            scalar("dead_fraction/0"),
            l0.activation.as_ref().unwrap().dead.unwrap()
        ));
        let l2 = &rec.layers[1]
            .activation
            .as_ref()
            .unwrap()
            .saturated
            .unwrap();
        assert!(f32_close(scalar("saturated_fraction/2"), *l2));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn histograms_are_opt_in() {
    let dir = temp_dir("nohist");
    let steps = monitored_run(&dir, false);
    for l in steps.iter().flat_map(|s| &s.layers) {
        assert!(l.weight_grad_histogram.is_none() && l.output_histogram.is_none());
        assert!(l.activation.as_ref().is_none_or(|a| a.histogram.is_none()));
    }
    let got = values(&events(&event_file(&dir)));
    assert!(got.iter().all(|(_, _, v)| matches!(v, Val::Scalar(_))));
    assert!(got.iter().any(|(_, t, _)| t == "grad_norm/4"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn histogram_buckets_follow_numpy_at_the_edges() {
    // 0 and 1e-12 are edges: each opens its bucket ([0, 1e-12) and [1e-12, 1.1e-12)).
    let h = Histogram::of(&[0.0f64, 1e-12]).unwrap();
    assert_eq!(h.bucket, [0, 1, 1]);
    assert_eq!(h.bucket_limit[0], 0.0);
    assert_eq!(h.bucket_limit[1], 1e-12);
    assert!(close(h.bucket_limit[2], 1.1e-12, 1e-15));
    // Nothing in a bucket: no histogram (PyTorch raises).
    assert!(Histogram::of::<f32>(&[]).is_none());
    assert!(Histogram::of(&[f64::NAN, f64::INFINITY]).is_none());
    // NaN shows in min and max and is counted in num, not in a bucket.
    let h = Histogram::of(&[1.0f32, f32::NAN]).unwrap();
    assert!(h.min.is_nan() && h.max.is_nan());
    assert_eq!((h.num, h.bucket.iter().sum::<u64>()), (2, 1));
}
