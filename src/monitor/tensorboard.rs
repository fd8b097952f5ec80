//! TensorBoard event files from the monitor's records (feature `tensorboard`).
//!
//! A [`TensorBoardWriter`] makes one event file in a log directory, named as TensorFlow and
//! PyTorch name theirs (`events.out.tfevents.<seconds>.<host>.<pid>.<n>`), and appends records
//! to it: first the file-version event (`brain.Event:2`), then one event per write. Each write
//! goes to the file at once (one `write` call, no buffer), so `tensorboard --logdir DIR` shows a
//! run while it trains. The records are protobuf messages ([`proto`]: `Event`, `Summary`,
//! `HistogramProto`, encoded by prost) framed as TFRecords ([`record`]: length, data and
//! their masked CRC-32C checksums).
//!
//! Scalars are written as PyTorch's `SummaryWriter.add_scalar` writes them by default
//! (`simple_value`, an f32), histograms as its `add_histogram` does (its default buckets: see
//! [`Histogram`]); `tests/tensorboard.rs` compares vgrad's files with one PyTorch wrote.

mod proto;
mod record;

use super::{Histogram, LayerRecord, StepRecord};
use crate::error::{Error, Result};
use prost::Message;
use proto::{Event, HistogramProto, Summary, SummaryValue, ValueKind, What};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes TensorBoard event files: the monitor's records, and scalars and histograms of your
/// own (a learning rate, a validation accuracy).
///
/// Attach one to a [`GradMonitor`](super::GradMonitor) with
/// [`attach_tensorboard`](super::GradMonitor::attach_tensorboard) and every recorded step is
/// written as it is recorded; or call [`write_step`](TensorBoardWriter::write_step) yourself.
///
/// # Tags
///
/// [`TensorBoardWriter::write_step`] writes, for a [`StepRecord`], `loss` and for each layer `L`
/// (its dotted name, `root` for the model's own parameters), so that TensorBoard groups them by
/// the part before the slash:
///
/// | tag | kind | value |
/// |---|---|---|
/// | `loss` | scalar | [`StepRecord::loss`] |
/// | `grad_norm/L` | scalar | ‖∂L/∂W‖, [`LayerRecord::weight_grad_norm`] |
/// | `update_ratio/L` | scalar | ‖ΔW‖/‖W‖, [`LayerRecord::update_ratio`] |
/// | `dead_fraction/L` | scalar | dead ReLU units after the layer, [`ActivationStats::dead`](super::ActivationStats::dead) |
/// | `saturated_fraction/L` | scalar | saturated units after the layer, [`ActivationStats::saturated`](super::ActivationStats::saturated) |
/// | `grad/L` | histogram | ∂L/∂W's elements, [`LayerRecord::weight_grad_histogram`] |
/// | `activation/L` | histogram | the activation after the layer, or its output ([`ActivationStats::histogram`](super::ActivationStats::histogram), [`LayerRecord::output_histogram`]) |
///
/// Each is written when the record has it: histograms need [`MonitorConfig::histograms`](super::MonitorConfig::histograms), and the
/// fractions only exist for the activations they mean something for.
///
/// # Example
/// ```
/// use vgrad::monitor::{Histogram, TensorBoardWriter};
///
/// let dir = std::env::temp_dir().join(format!("vgrad-doc-tb-{}", std::process::id()));
/// let mut tb = TensorBoardWriter::new(&dir)?;
/// for step in 0..3 {
///     tb.add_scalar("lr", 0.1 / (step + 1) as f64, step)?;
///     let h = Histogram::of(&[0.5f32, -1.0, 2.0]).unwrap();
///     tb.add_histogram("weights", &h, step)?;
/// }
/// assert!(tb.path().file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
/// // Open it with: tensorboard --logdir <dir>
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct TensorBoardWriter {
    path: PathBuf,
    file: File,
    /// The record being built, kept to reuse its allocation.
    buf: Vec<u8>,
}

/// Numbers the files this process opens, as TensorBoard's writer does, so two writers opened in
/// one second in one directory get two files.
static NEXT_FILE: AtomicUsize = AtomicUsize::new(0);

/// The machine's name for the file name, read without a dependency: Linux's
/// `/proc/sys/kernel/hostname`, else the usual environment variables, else `localhost`.
/// Characters that cannot be in a file name become `_`.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string());
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn step_i64(step: usize) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

/// A layer's name in a tag: the model's own parameters (path `""`) are `root`.
fn layer_tag(prefix: &str, layer: &LayerRecord) -> String {
    let name = if layer.name.is_empty() {
        "root"
    } else {
        &layer.name
    };
    format!("{prefix}/{name}")
}

fn scalar(tag: String, value: f64) -> SummaryValue {
    SummaryValue {
        tag,
        value: Some(ValueKind::SimpleValue(value as f32)),
    }
}

fn histogram(tag: String, h: &Histogram) -> SummaryValue {
    SummaryValue {
        tag,
        value: Some(ValueKind::Histo(HistogramProto {
            min: h.min,
            max: h.max,
            num: h.num as f64,
            sum: h.sum,
            sum_squares: h.sum_squares,
            bucket_limit: h.bucket_limit.clone(),
            bucket: h.bucket.iter().map(|&c| c as f64).collect(),
        })),
    }
}

impl TensorBoardWriter {
    /// Creates `log_dir` (and its parents) if needed and a new event file in it, and writes the
    /// file-version record. One directory is one run in TensorBoard: give each run its own
    /// (`runs/sigmoid`, `runs/relu`) to see them side by side.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory or the file cannot be created or written.
    pub fn new(log_dir: impl AsRef<Path>) -> Result<Self> {
        let dir = log_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = format!(
            "events.out.tfevents.{:010}.{}.{}.{}",
            now() as u64,
            hostname(),
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        // `create_new`: never append to, or truncate, another writer's file.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        let mut w = TensorBoardWriter {
            path,
            file,
            buf: Vec::new(),
        };
        w.write_event(Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".to_string())),
        })?;
        Ok(w)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event, framed, with one `write` call: a reader polling the file sees whole
    /// records or a torn tail it waits on, never a record spliced from two writes.
    fn write_event(&mut self, event: Event) -> Result<()> {
        let data = event.encode_to_vec();
        self.buf.clear();
        record::frame(&data, &mut self.buf);
        self.file.write_all(&self.buf).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes the values as one event at `step`; nothing when there are none.
    fn write_values(&mut self, step: usize, value: Vec<SummaryValue>) -> Result<()> {
        if value.is_empty() {
            return Ok(());
        }
        self.write_event(Event {
            wall_time: now(),
            step: step_i64(step),
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// Writes a scalar (stored as an f32, as TensorBoard's scalars are) under `tag` at `step`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: usize) -> Result<()> {
        self.write_values(step, vec![scalar(tag.to_string(), value)])
    }

    /// Writes a histogram (see [`Histogram::of`]) under `tag` at `step`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    pub fn add_histogram(&mut self, tag: &str, histogram: &Histogram, step: usize) -> Result<()> {
        self.write_values(step, vec![self::histogram(tag.to_string(), histogram)])
    }

    /// Writes everything `record` holds (see the tags in [`TensorBoardWriter`]) as one event
    /// at `record.step`.
    ///
    /// A step's update ratios are known only after the optimiser step that follows its
    /// backward, so a record written straight after [`GradMonitor::backward`] has none yet:
    /// write them with [`write_update_ratios`](TensorBoardWriter::write_update_ratios) once the
    /// monitor has filled them in (an attached writer does both for you).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    ///
    /// [`GradMonitor::backward`]: super::GradMonitor::backward
    pub fn write_step(&mut self, record: &StepRecord) -> Result<()> {
        let mut values = Vec::with_capacity(1 + 6 * record.layers.len());
        if let Some(loss) = record.loss {
            values.push(scalar("loss".to_string(), loss));
        }
        for l in &record.layers {
            values.push(scalar(layer_tag("grad_norm", l), l.weight_grad_norm));
            if let Some(r) = l.update_ratio {
                values.push(scalar(layer_tag("update_ratio", l), r));
            }
            let a = l.activation.as_ref();
            if let Some(d) = a.and_then(|a| a.dead) {
                values.push(scalar(layer_tag("dead_fraction", l), d));
            }
            if let Some(s) = a.and_then(|a| a.saturated) {
                values.push(scalar(layer_tag("saturated_fraction", l), s));
            }
            if let Some(h) = &l.weight_grad_histogram {
                values.push(histogram(layer_tag("grad", l), h));
            }
            let act = a.and_then(|a| a.histogram.as_ref());
            if let Some(h) = act.or(l.output_histogram.as_ref()) {
                values.push(histogram(layer_tag("activation", l), h));
            }
        }
        self.write_values(record.step, values)
    }

    /// Writes the `update_ratio/L` scalars that `record` has, as one event at `record.step`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    pub fn write_update_ratios(&mut self, record: &StepRecord) -> Result<()> {
        let values = record
            .layers
            .iter()
            .filter_map(|l| Some(scalar(layer_tag("update_ratio", l), l.update_ratio?)))
            .collect();
        self.write_values(record.step, values)
    }
}

/// A writer attached to a monitor, and the first error it met: the monitor's `backward` has no
/// `Result` to report it through, so it waits for
/// [`GradMonitor::tensorboard_status`](super::GradMonitor::tensorboard_status).
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) writer: TensorBoardWriter,
    pub(crate) error: Option<Error>,
    /// Set by the first failure: later records are not written, since a reader stops at the
    /// torn record anyway.
    pub(crate) failed: bool,
}

impl Attached {
    pub(crate) fn new(writer: TensorBoardWriter) -> Self {
        Attached {
            writer,
            error: None,
            failed: false,
        }
    }

    /// Runs one write unless an earlier one failed, keeping its error.
    pub(crate) fn write(&mut self, f: impl FnOnce(&mut TensorBoardWriter) -> Result<()>) {
        if !self.failed {
            if let Err(e) = f(&mut self.writer) {
                self.failed = true;
                self.error = Some(e);
            }
        }
    }
}
