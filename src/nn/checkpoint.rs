//! Checkpoints in the safetensors format, interchangeable with PyTorch.
//!
//! A file holds a module's [`state_dict`](Module::state_dict): every parameter and buffer under
//! its dotted PyTorch name (`0.weight`, `blocks.3.bn.running_mean`), row-major, in the layout
//! PyTorch uses (a [`Linear`](super::Linear) weight is `[out, in]`). So
//! `safetensors.torch.save_file(model.state_dict(), path)` in Python writes a file
//! [`load_safetensors`] reads into the same-structured vgrad model, and
//! `model.load_state_dict(safetensors.torch.load_file(path))` reads one vgrad wrote.
//!
//! An optimiser's state (momentum buffers, moment estimates, step counts, hyperparameters) is
//! saved beside the model with [`save_optimizer`] and loaded with [`load_optimizer`], so a
//! training run can stop and resume exactly.
//!
//! # Dtypes
//! Tensors are written as `T::DTYPE` (`F32` or `F64`). Buffers named `num_batches_tracked`
//! (BatchNorm's counter, an `int64` in PyTorch) are written as `I64` and must hold whole
//! numbers. On load, `F32` and `F64` tensors are both accepted and converted to `T` (F32 → f64
//! is exact, F64 → f32 rounds to nearest), as PyTorch's `load_state_dict` converts; `I64` is
//! accepted for `num_batches_tracked` only. Every other dtype (F16, BF16, integers) is an
//! error.
//!
//! # Safety of loading
//! A file is untrusted input. Loading never panics and never allocates by a size the header
//! claims: sizes and offsets are checked against the bytes actually present before anything
//! is read. It never leaves a model half-loaded either: every tensor is decoded and checked
//! (names, shapes, dtypes) into new buffers first, and the model is changed only when all of
//! them passed.
//!
//! # Example
//! ```
//! use rand::{SeedableRng, rngs::StdRng};
//! use vgrad::nn::{load_safetensors_bytes, save_safetensors_bytes, Activation, Linear, Module, Sequential};
//!
//! let mut rng = StdRng::seed_from_u64(0);
//! let build = |rng: &mut StdRng| -> vgrad::Result<Sequential<f32>> {
//!     Ok(Sequential::new().push(Linear::new(4, 8, rng)?).push(Activation::Tanh).push(Linear::new(8, 3, rng)?))
//! };
//! let trained = build(&mut rng)?;
//! let bytes = save_safetensors_bytes(&trained)?;
//! let mut fresh = build(&mut rng)?; // different random weights
//! load_safetensors_bytes(&mut fresh, &bytes)?;
//! for ((n1, a), (n2, b)) in trained.state_dict().iter().zip(fresh.state_dict()) {
//!     assert_eq!(n1, &n2);
//!     assert_eq!(a.data(), b.data());
//! }
//! # Ok::<(), vgrad::Error>(())
//! ```

use super::module::{DottedPath, Module, Param, VisitorMut};
use super::optim::{Optimizer, OptimizerState};
use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// PyTorch stores BatchNorm's batch counter as `int64`; vgrad's buffers are all `T`.
fn is_counter(name: &str) -> bool {
    name == "num_batches_tracked" || name.ends_with(".num_batches_tracked")
}

fn format_err(msg: impl Into<String>) -> Error {
    Error::Format(msg.into())
}

/// One tensor ready to be written: implements the `safetensors` crate's `View`.
struct Encoded {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Encoded {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn encode<T: Element>(name: &str, t: &Tensor<T>) -> Result<Encoded> {
    let to64 = |x: &T| x.to_f64().unwrap_or(f64::NAN);
    let (dtype, bytes) = if is_counter(name) {
        let mut bytes = Vec::with_capacity(t.numel() * 8);
        for x in t.data() {
            let v = to64(x);
            // i64::MAX as f64 rounds up to 2^63, so `<` keeps the cast exact.
            if !(v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64) {
                return Err(format_err(format!(
                    "`{name}` is saved as int64 (as PyTorch stores it) but holds {v}"
                )));
            }
            bytes.extend_from_slice(&(v as i64).to_le_bytes());
        }
        (Dtype::I64, bytes)
    } else if T::DTYPE == "F32" {
        let mut bytes = Vec::with_capacity(t.numel() * 4);
        for x in t.data() {
            bytes.extend_from_slice(&(to64(x) as f32).to_le_bytes());
        }
        (Dtype::F32, bytes)
    } else {
        let mut bytes = Vec::with_capacity(t.numel() * 8);
        for x in t.data() {
            bytes.extend_from_slice(&to64(x).to_le_bytes());
        }
        (Dtype::F64, bytes)
    };
    Ok(Encoded {
        dtype,
        shape: t.shape().to_vec(),
        bytes,
    })
}

/// The model's `state_dict` as a name → tensor list, rejecting duplicate names (two children
/// registered under one name would make a file that cannot be loaded back).
fn unique_state<T: Element>(model: &dyn Module<T>) -> Result<Vec<(String, Tensor<T>)>> {
    let state = model.state_dict();
    let mut seen = BTreeSet::new();
    for (name, _) in &state {
        if !seen.insert(name.as_str()) {
            return Err(format_err(format!(
                "the model has two tensors named `{name}`"
            )));
        }
    }
    Ok(state)
}

/// Serialises `model`'s parameters and buffers to safetensors bytes; see the
/// [module docs](crate::nn::checkpoint) for names and dtypes.
///
/// # Errors
/// [`Error::Format`] if two tensors share a name, or a `num_batches_tracked` buffer holds a
/// value that is not a whole number in `i64` range.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::nn::{save_safetensors_bytes, Linear};
/// let layer = Linear::<f64>::new(2, 3, &mut StdRng::seed_from_u64(1))?;
/// let bytes = save_safetensors_bytes(&layer)?;
/// let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
/// let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
/// assert!(header.contains(r#""weight":{"dtype":"F64","shape":[3,2]"#));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn save_safetensors_bytes<T: Element>(model: &dyn Module<T>) -> Result<Vec<u8>> {
    let state = unique_state(model)?;
    let encoded = state
        .iter()
        .map(|(name, t)| Ok((name.clone(), encode(name, t)?)))
        .collect::<Result<Vec<_>>>()?;
    // `format: pt` is what `safetensors.torch.save_file` writes; some loaders (transformers)
    // look for it.
    let metadata = Some(
        [("format".to_string(), "pt".to_string())]
            .into_iter()
            .collect(),
    );
    safetensors::serialize(encoded.iter().map(|(n, e)| (n.as_str(), e)), metadata)
        .map_err(|e| format_err(format!("safetensors serialisation failed: {e}")))
}

/// Saves `model`'s parameters and buffers to a safetensors file at `path`, atomically: the
/// bytes go to a temporary file in the same directory, which is flushed to disk (`fsync`) and
/// then renamed over `path`. A crash or error part-way leaves either the old file or the new
/// one, never a mixture, and removes the temporary file.
///
/// # Errors
/// [`Error::Io`] (with `path`) if the temporary file cannot be created, written or synced, or
/// the rename fails (for example when `path` is a directory); the errors of
/// [`save_safetensors_bytes`].
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::nn::{load_safetensors, save_safetensors, Linear};
/// let mut rng = StdRng::seed_from_u64(1);
/// let layer = Linear::<f32>::new(2, 3, &mut rng)?;
/// let path = std::env::temp_dir().join(format!("vgrad-doc-{}.safetensors", std::process::id()));
/// save_safetensors(&layer, &path)?;
/// let mut other = Linear::<f32>::new(2, 3, &mut rng)?;
/// load_safetensors(&mut other, &path)?;
/// assert_eq!(other.weight().value().data(), layer.weight().value().data());
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn save_safetensors<T: Element>(model: &dyn Module<T>, path: impl AsRef<Path>) -> Result<()> {
    let bytes = save_safetensors_bytes(model)?;
    write_atomic(path.as_ref(), &bytes)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path.file_name().ok_or_else(|| {
        io_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path does not name a file",
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Same directory, so the rename stays on one filesystem and is atomic; a unique name, so
    // concurrent saves never share a temporary file.
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Nothing useful to do if the clean-up fails too; the original error matters more.
        let _ = fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    // Make the rename itself durable. Best effort: some filesystems refuse to sync a
    // directory, and by now the new file is complete and in place either way.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a whole safetensors file and loads it into `model`; see [`load_safetensors_bytes`].
///
/// The file is read into memory in one go (its real size, not a size from its header).
///
/// # Errors
/// [`Error::Io`] (with `path`) if the file cannot be read; the errors of
/// [`load_safetensors_bytes`]. On any error the model is unchanged.
pub fn load_safetensors<T: Element>(
    model: &mut dyn Module<T>,
    path: impl AsRef<Path>,
) -> Result<()> {
    load_file(path.as_ref(), |bytes| load_safetensors_bytes(model, bytes))
}

/// Reads the whole file at `path` and hands its bytes to `load`, naming the file in a format
/// error.
fn load_file(path: &Path, load: impl FnOnce(&[u8]) -> Result<()>) -> Result<()> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load(&bytes).map_err(|e| match e {
        Error::Format(msg) => Error::Format(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Loads safetensors bytes into `model`: every parameter and buffer of the model must be in
/// the file under its dotted name, with the same shape, and the file must hold nothing else.
///
/// # Errors
/// [`Error::Format`] for a truncated or corrupted file (bad header length, invalid JSON,
/// offsets outside the data or not covering it), missing keys, unexpected keys, a shape that
/// differs from the model's, or an unsupported dtype. The message names the offending keys.
/// On any error the model is unchanged.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::nn::{load_safetensors_bytes, save_safetensors_bytes, Linear};
/// let mut rng = StdRng::seed_from_u64(1);
/// let small = Linear::<f32>::new(2, 3, &mut rng)?;
/// let mut big = Linear::<f32>::new(2, 4, &mut rng)?;
/// let before = big.weight().value().to_vec();
/// let err = load_safetensors_bytes(&mut big, &save_safetensors_bytes(&small)?).unwrap_err();
/// assert!(err.to_string().contains("`weight`: shape [3, 2] in the file, [4, 2] in the model"));
/// assert_eq!(big.weight().value().to_vec(), before);
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn load_safetensors_bytes<T: Element>(model: &mut dyn Module<T>, bytes: &[u8]) -> Result<()> {
    check_offsets(bytes)?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| format_err(format!("not a valid safetensors file: {e}")))?;
    let expected = unique_state(&*model)?;

    let in_model: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let in_file: BTreeSet<&str> = file.names().into_iter().collect();
    let missing: Vec<&str> = in_model.difference(&in_file).copied().collect();
    let unexpected: Vec<&str> = in_file.difference(&in_model).copied().collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        let mut msg = String::from("the file does not match the model:");
        if !missing.is_empty() {
            msg += &format!(" missing key(s) {missing:?}");
        }
        if !unexpected.is_empty() {
            msg += &format!(" unexpected key(s) {unexpected:?}");
        }
        return Err(format_err(msg));
    }

    let mut loaded = HashMap::with_capacity(expected.len());
    for (name, current) in &expected {
        let view = file
            .tensor(name)
            .map_err(|e| format_err(format!("`{name}`: {e}")))?;
        if view.shape() != current.shape() {
            return Err(format_err(format!(
                "`{name}`: shape {:?} in the file, {:?} in the model",
                view.shape(),
                current.shape()
            )));
        }
        let data = decode::<T>(name, view.dtype(), view.data(), current.numel())?;
        loaded.insert(name.clone(), Tensor::from_vec(data, current.shape())?);
    }

    // Every check passed: only now touch the model.
    let mut swap = Swap {
        path: DottedPath::default(),
        loaded,
    };
    model.visit_mut(&mut swap);
    debug_assert!(swap.loaded.is_empty());
    Ok(())
}

/// Rejects any tensor whose `data_offsets` reach past the data actually present, before the
/// `safetensors` crate sees the header. The crate checks coverage with an unchecked
/// `offsets_end + 8 + header_len`, which a header with huge offsets overflows (a panic in
/// builds with overflow checks); bounding every offset by the real data length first rules
/// that out.
fn check_offsets(bytes: &[u8]) -> Result<()> {
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            format_err(format!(
                "file of {} bytes is too short for a safetensors header",
                bytes.len()
            ))
        })?;
    let claimed = u64::from_le_bytes(len_bytes);
    let available = (bytes.len() - 8) as u64;
    if claimed > available {
        return Err(format_err(format!(
            "the header claims {claimed} bytes but only {available} follow: truncated or corrupted"
        )));
    }
    let header = &bytes[8..8 + claimed as usize];
    let data_len = available - claimed;
    let json: serde_json::Value = serde_json::from_slice(header)
        .map_err(|e| format_err(format!("the header is not valid JSON: {e}")))?;
    let entries = json
        .as_object()
        .ok_or_else(|| format_err("the header is not a JSON object"))?;
    for (name, info) in entries {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info.get("data_offsets").and_then(|o| o.as_array());
        if let Some(offsets) = offsets {
            for o in offsets {
                if o.as_u64().is_some_and(|o| o > data_len) {
                    return Err(format_err(format!(
                        "`{name}`: data offset {o} is past the end of the {data_len} data bytes"
                    )));
                }
            }
        }
        // Anything else malformed is left to the safetensors crate's own checks.
    }
    Ok(())
}

/// Decodes little-endian `bytes` of `dtype` into `numel` elements of `T`. `numel` comes from
/// the model and equals the file's shape product; the byte length is checked against it
/// before allocating.
fn decode<T: Element>(name: &str, dtype: Dtype, bytes: &[u8], numel: usize) -> Result<Vec<T>> {
    let width = match dtype {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
        Dtype::I64 if is_counter(name) => 8,
        other => {
            let allowed = if is_counter(name) {
                "I64, F32 or F64"
            } else {
                "F32 or F64"
            };
            return Err(format_err(format!(
                "`{name}`: dtype {other} is not supported (expected {allowed})"
            )));
        }
    };
    if Some(bytes.len()) != numel.checked_mul(width) {
        return Err(format_err(format!(
            "`{name}`: {} bytes of {dtype} for {numel} elements",
            bytes.len()
        )));
    }
    let mut out = Vec::with_capacity(numel);
    match dtype {
        Dtype::F32 => {
            for c in bytes.chunks_exact(4) {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                out.push(T::of(f64::from(x)));
            }
        }
        Dtype::F64 => {
            for c in bytes.chunks_exact(8) {
                let x = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                out.push(T::of(x));
            }
        }
        _ => {
            for c in bytes.chunks_exact(8) {
                let x = i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                out.push(T::of(x as f64));
            }
        }
    }
    Ok(out)
}

/// Serialises `opt`'s state for `model` ([`Optimizer::state_dict`]) to safetensors bytes, so
/// that training can resume where it stopped: save the model with [`save_safetensors`] and the
/// optimiser with this, load both back, and the next steps are those the uninterrupted run
/// would have taken.
///
/// Each buffer is a tensor named `<parameter>.<buffer>` with PyTorch's buffer names
/// (`0.weight.exp_avg`, `0.weight.momentum_buffer`, …) in `T::DTYPE`, so Python's
/// `safetensors.torch.load_file` reads them. The header's metadata holds the rest as text:
/// `optimizer` (the kind: `SGD`, `Adam`, `AdamW`, `RMSprop`), `hyper.<name>` for each
/// hyperparameter and `step.<parameter>` for each step count. A learning-rate schedule is not
/// part of it: an [`LrScheduler`](crate::nn::LrScheduler) is its base rate and step count,
/// which the training loop saves as it likes and restores with
/// [`set_epoch`](crate::nn::LrScheduler::set_epoch) (a
/// [`ReduceLROnPlateau`](crate::nn::ReduceLROnPlateau): its
/// [`state`](crate::nn::ReduceLROnPlateau::state) and
/// [`from_state`](crate::nn::ReduceLROnPlateau::from_state)).
///
/// # Errors
/// The errors of [`Optimizer::state_dict`]; [`Error::Format`] if serialisation fails.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::nn::{load_optimizer_bytes, save_optimizer_bytes, Adam, AdamConfig, Ctx, Linear};
/// use vgrad::nn::{Module, Optimizer};
/// use vgrad::{Tape, Tensor};
///
/// let mut model = Linear::<f64>::new(2, 1, &mut StdRng::seed_from_u64(0))?;
/// let mut opt = Adam::new(AdamConfig { lr: 0.1, ..Default::default() })?;
/// let x = Tensor::from_vec(vec![1.0, 2.0], &[1, 2])?;
/// let tape = Tape::new();
/// let mut ctx = Ctx::new(&tape);
/// let loss = model.forward(&mut ctx, tape.constant(x)).square().sum();
/// opt.backward_step(&mut model, &ctx, loss)?;
///
/// let bytes = save_optimizer_bytes(&opt, &model)?;
/// let mut resumed = Adam::new(AdamConfig::default())?; // lr 1e-3: the file's 0.1 replaces it
/// load_optimizer_bytes(&mut resumed, &model, &bytes)?;
/// assert_eq!(resumed.lr(), 0.1);
/// let state = resumed.state_dict(&model)?;
/// assert_eq!(state.steps["weight"], 1);
/// assert_eq!(state.buffers["weight.exp_avg"].shape(), &[1, 2]);
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn save_optimizer_bytes<T: Element>(
    opt: &dyn Optimizer<T>,
    model: &dyn Module<T>,
) -> Result<Vec<u8>> {
    let state = opt.state_dict(model)?;
    let encoded = state
        .buffers
        .iter()
        .map(|(name, t)| Ok((name.clone(), encode(name, t)?)))
        .collect::<Result<Vec<_>>>()?;
    // Rust prints an f64 with the fewest digits that parse back to the same value.
    let hyper = state
        .hyper
        .iter()
        .map(|(name, x)| (format!("hyper.{name}"), x.to_string()));
    let steps = state
        .steps
        .iter()
        .map(|(name, n)| (format!("step.{name}"), n.to_string()));
    let metadata = std::iter::once(("optimizer".to_string(), state.kind.clone()))
        .chain(hyper)
        .chain(steps)
        .collect();
    safetensors::serialize(encoded.iter().map(|(n, e)| (n.as_str(), e)), Some(metadata))
        .map_err(|e| format_err(format!("safetensors serialisation failed: {e}")))
}

/// Saves `opt`'s state for `model` to a safetensors file at `path`, atomically (as
/// [`save_safetensors`]); see [`save_optimizer_bytes`] for the contents.
///
/// # Errors
/// [`Error::Io`] (with `path`) as for [`save_safetensors`]; the errors of
/// [`save_optimizer_bytes`].
pub fn save_optimizer<T: Element>(
    opt: &dyn Optimizer<T>,
    model: &dyn Module<T>,
    path: impl AsRef<Path>,
) -> Result<()> {
    let bytes = save_optimizer_bytes(opt, model)?;
    write_atomic(path.as_ref(), &bytes)
}

/// Reads an optimiser state file and loads it into `opt` for `model`; see
/// [`load_optimizer_bytes`].
///
/// # Errors
/// [`Error::Io`] (with `path`) if the file cannot be read; the errors of
/// [`load_optimizer_bytes`]. On any error the optimiser is unchanged.
pub fn load_optimizer<T: Element>(
    opt: &mut dyn Optimizer<T>,
    model: &dyn Module<T>,
    path: impl AsRef<Path>,
) -> Result<()> {
    load_file(path.as_ref(), |bytes| {
        load_optimizer_bytes(opt, model, bytes)
    })
}

/// Loads bytes written by [`save_optimizer_bytes`] into `opt`
/// ([`Optimizer::load_state_dict`]): the file's hyperparameters replace `opt`'s, and its
/// buffers and step counts become the state of `model`'s parameters of the same names.
/// Tensors are decoded as for [`load_safetensors_bytes`] (`F32` or `F64`, converted to `T`).
/// Metadata keys other than `optimizer`, `hyper.*` and `step.*` (such as `format`) are
/// ignored.
///
/// # Errors
/// [`Error::Format`] for a truncated or corrupted file, one without the `optimizer` entry (a
/// model's weights, say), a hyperparameter or step count that does not parse, and the errors
/// of [`Optimizer::load_state_dict`]: another kind of optimiser, names that do not match
/// `model`, a buffer of the wrong shape. On any error the optimiser is unchanged.
pub fn load_optimizer_bytes<T: Element>(
    opt: &mut dyn Optimizer<T>,
    model: &dyn Module<T>,
    bytes: &[u8],
) -> Result<()> {
    check_offsets(bytes)?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| format_err(format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| format_err(format!("not a valid safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let kind = metadata.get("optimizer").ok_or_else(|| {
        format_err("no `optimizer` entry in the metadata: not an optimiser state file")
    })?;
    let mut state = OptimizerState {
        kind: kind.clone(),
        hyper: BTreeMap::new(),
        buffers: BTreeMap::new(),
        steps: BTreeMap::new(),
    };
    for (key, text) in &metadata {
        let unparsable = || format_err(format!("metadata `{key}`: `{text}` is not a number"));
        if let Some(name) = key.strip_prefix("hyper.") {
            let x = text.parse::<f64>().map_err(|_| unparsable())?;
            state.hyper.insert(name.to_string(), x);
        } else if let Some(name) = key.strip_prefix("step.") {
            let n = text.parse::<u64>().map_err(|_| unparsable())?;
            state.steps.insert(name.to_string(), n);
        }
    }
    for (name, view) in file.tensors() {
        let numel = view
            .shape()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| format_err(format!("`{name}`: shape {:?} overflows", view.shape())))?;
        let data = decode::<T>(&name, view.dtype(), view.data(), numel)?;
        let t = Tensor::from_vec(data, view.shape())?;
        state.buffers.insert(name, t);
    }
    opt.load_state_dict(model, &state)
}

/// Moves the decoded tensors into the model, by dotted name.
struct Swap<T> {
    path: DottedPath,
    loaded: HashMap<String, Tensor<T>>,
}

impl<T: Element> VisitorMut<T> for Swap<T> {
    fn enter(&mut self, name: &str) {
        self.path.enter(name);
    }
    fn exit(&mut self) {
        self.path.exit();
    }
    fn param(&mut self, name: &str, p: &mut Param<T>) {
        if let Some(t) = self.loaded.remove(&self.path.full(name)) {
            p.set(t);
        }
    }
    fn buffer(&mut self, name: &str, b: &mut Tensor<T>) {
        if let Some(t) = self.loaded.remove(&self.path.full(name)) {
            *b = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header whose offsets add up past `u64::MAX`: eight U8 tensors of 2^61 − 1 bytes.
    /// Without [`check_offsets`] the `safetensors` crate overflows on it.
    #[test]
    fn offsets_summing_past_u64_are_an_error_not_a_panic() {
        let size: u64 = (1 << 61) - 1;
        let entries: Vec<String> = (0..8)
            .map(|i| {
                format!(
                    r#""t{i}":{{"dtype":"U8","shape":[{size}],"data_offsets":[{},{}]}}"#,
                    i * size,
                    (i + 1) * size
                )
            })
            .collect();
        let header = format!("{{{}}}", entries.join(","));
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        let mut model = crate::nn::Sequential::<f32>::new();
        let err = load_safetensors_bytes(&mut model, &bytes).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
    }

    #[test]
    fn counters_must_be_whole() {
        let t = Tensor::<f32>::scalar(2.5);
        assert!(encode("bn.num_batches_tracked", &t).is_err());
        let e = encode("bn.num_batches_tracked", &Tensor::<f32>::scalar(7.0)).unwrap();
        assert_eq!(e.dtype, Dtype::I64);
        assert_eq!(e.bytes, 7i64.to_le_bytes());
        // Not a counter: stored as the element type.
        assert_eq!(encode("bn.tracked", &t).unwrap().dtype, Dtype::F32);
    }
}
