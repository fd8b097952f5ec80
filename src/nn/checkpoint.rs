//! Checkpoints in the safetensors format, interchangeable with PyTorch: the format, its dtypes
//! and the rules of loading are documented for users in the [`nn`](crate::nn) module docs
//! ("Checkpoints"); the items are used from there (`vgrad::nn::save_safetensors`), this
//! module's path is hidden.

use super::module::{DottedPath, Module, Param, VisitorMut};
use super::optim::{Optimizer, OptimizerState};
use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use safetensors::{Dtype, View};
use serde::de;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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

fn to64<T: Element>(x: &T) -> f64 {
    x.to_f64().unwrap_or(f64::NAN)
}

/// A `num_batches_tracked` element as the `int64` PyTorch stores: a whole number from 0 to
/// 2⁶³ − 1. Saving and loading apply this one check, so every file that loads saves back.
fn counter_value(name: &str, v: f64) -> Result<i64> {
    // i64::MAX as f64 rounds up to 2^63, so `<` keeps the cast exact.
    if v.fract() == 0.0 && v >= 0.0 && v < i64::MAX as f64 {
        Ok(v as i64)
    } else {
        Err(format_err(format!(
            "`{name}` counts batches (an int64 in PyTorch): it must hold a whole number from 0 \
             to 2^63 - 1, not {v}"
        )))
    }
}

/// The name safetensors reserves for the header's metadata: a tensor saved under it would
/// collide with the metadata entry and make a file that cannot be loaded.
const RESERVED: &str = "__metadata__";

fn encode<T: Element>(name: &str, t: &Tensor<T>) -> Result<Encoded> {
    if name == RESERVED {
        return Err(format_err(format!(
            "a tensor cannot be saved under the name `{RESERVED}`: safetensors reserves it for \
             the header's metadata"
        )));
    }
    let to64 = to64::<T>;
    let (dtype, bytes) = if is_counter(name) {
        let mut bytes = Vec::with_capacity(t.numel() * 8);
        for x in t.data() {
            bytes.extend_from_slice(&counter_value(name, to64(x))?.to_le_bytes());
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

/// The file key of each of `state`'s names under `key`, refusing two names that map to one key.
fn unique_keys<T>(state: &[(String, T)], key: &dyn Fn(&str) -> String) -> Result<Vec<String>> {
    let keys: Vec<String> = state.iter().map(|(n, _)| key(n)).collect();
    let mut seen = BTreeSet::new();
    for (k, (n, _)) in keys.iter().zip(state) {
        if !seen.insert(k.as_str()) {
            return Err(format_err(format!(
                "two tensors map to the key `{k}` (one of them `{n}`)"
            )));
        }
    }
    Ok(keys)
}

/// A key map from a rename table: the longest `from` prefix of a name is replaced by its `to`
/// (names matching no prefix are kept). For [`load_safetensors_with`] and the other `_with`
/// functions, whose map takes a model name to a file key.
///
/// # Example
/// A PyTorch `Sequential(Linear, ResBlock(l1, bn, l2))`, where vgrad's block is a
/// `Residual` around `Sequential(Linear, BatchNorm1d, Linear)`:
/// ```
/// let key = vgrad::nn::rename_keys(&[
///     ("1.branch.0.", "1.l1."),
///     ("1.branch.1.", "1.bn."),
///     ("1.branch.2.", "1.l2."),
/// ]);
/// assert_eq!(key("1.branch.1.running_var"), "1.bn.running_var");
/// assert_eq!(key("0.weight"), "0.weight");
/// ```
pub fn rename_keys(table: &[(&str, &str)]) -> impl Fn(&str) -> String + use<> {
    let table: Vec<(String, String)> = table
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    move |name: &str| {
        let best = table
            .iter()
            .filter(|(from, _)| name.starts_with(from.as_str()))
            .max_by_key(|(from, _)| from.len());
        match best {
            Some((from, to)) => format!("{to}{}", &name[from.len()..]),
            None => name.to_string(),
        }
    }
}

/// Serialises `model`'s parameters and buffers to safetensors bytes; see the
/// [`nn` module docs](crate::nn#checkpoints) for names and dtypes.
///
/// # Errors
/// [`Error::Format`] if two tensors share a name, a tensor is named `__metadata__` (the name
/// safetensors reserves for the header's metadata), or a `num_batches_tracked` buffer holds a
/// value that is not a whole number from 0 to 2⁶³ − 1.
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
    save_safetensors_bytes_with(model, |name| name.to_string())
}

/// [`save_safetensors_bytes`] with each tensor stored under `key(name)` instead of its dotted
/// name: for a file that a PyTorch model with other attribute names must load (see
/// [`rename_keys`]).
///
/// # Errors
/// As [`save_safetensors_bytes`]; [`Error::Format`] also if two names map to one key.
pub fn save_safetensors_bytes_with<T: Element>(
    model: &dyn Module<T>,
    key: impl Fn(&str) -> String,
) -> Result<Vec<u8>> {
    let state = unique_state(model)?;
    let keys = unique_keys(&state, &key)?;
    let encoded = state
        .iter()
        .zip(&keys)
        .map(|((name, t), key)| {
            if key == RESERVED {
                // The reserved name is checked on the key the file will hold.
                encode(key, t)?;
            }
            Ok((key.clone(), encode(name, t)?))
        })
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
/// one, never a mixture, and removes the temporary file. A process killed mid-save leaves its
/// temporary file (`.{name}.{pid}-{n}.tmp`) behind; the next successful save of `path`
/// removes such leftovers once no live process can be writing them (on Linux: their pid has
/// no `/proc` entry, or it is this process and none of its saves is writing that file).
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

/// [`save_safetensors`] with each tensor stored under `key(name)`; see
/// [`save_safetensors_bytes_with`].
///
/// # Errors
/// As [`save_safetensors`] and [`save_safetensors_bytes_with`].
pub fn save_safetensors_with<T: Element>(
    model: &dyn Module<T>,
    path: impl AsRef<Path>,
    key: impl Fn(&str) -> String,
) -> Result<()> {
    let bytes = save_safetensors_bytes_with(model, key)?;
    write_atomic(path.as_ref(), &bytes)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The counters of this process's temporary files being written right now: a cleanup never
/// removes them.
static WRITING: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

/// A leftover of another process is removed only when its file was last written this long
/// ago, where that process's liveness cannot be read from `/proc` (see [`is_stale`]).
const STALE_AFTER: Duration = Duration::from_secs(60);

fn writing() -> std::sync::MutexGuard<'static, BTreeSet<u64>> {
    // The set stays consistent even if a holder panicked: every change is one insert or remove.
    WRITING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The temporary file for one save of the target named `file_name`: `.{name}.{pid}-{n}.tmp`,
/// where `n` counts this process's saves.
fn temp_name(file_name: &str, pid: u32, n: u64) -> String {
    format!(".{file_name}.{pid}-{n}.tmp")
}

/// The `(pid, n)` of `entry` if it is the temporary file of a save of `file_name`.
fn parse_temp_name(file_name: &str, entry: &str) -> Option<(u32, u64)> {
    let rest = entry
        .strip_prefix('.')?
        .strip_prefix(file_name)?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?;
    let (pid, n) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(pid) && digits(n)) {
        return None;
    }
    Some((pid.parse().ok()?, n.parse().ok()?))
}

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
    let file_name = file_name.to_string_lossy();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Same directory, so the rename stays on one filesystem and is atomic; a unique name, so
    // concurrent saves never share a temporary file. A name can still exist: a process
    // killed mid-save that had this pid before us left it. Then the next counter.
    let pid = std::process::id();
    let (mut f, tmp, n) = loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        writing().insert(n);
        let tmp = dir.join(temp_name(&file_name, pid, n));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (f, tmp, n),
            Err(e) => {
                writing().remove(&n);
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(io_err(e));
                }
            }
        }
    };
    let written = (|| {
        // Held until the file is closed: it tells a cleanup in another process (in another
        // pid namespace, or off Linux) that this file is being written. Best effort: a
        // filesystem without locks leaves only the age rule of `is_stale`.
        let _ = f.lock();
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Nothing useful to do if the clean-up fails too; the original error matters more.
        let _ = fs::remove_file(&tmp);
        writing().remove(&n);
        return Err(io_err(e));
    }
    writing().remove(&n);
    // Make the rename itself durable. Best effort: some filesystems refuse to sync a
    // directory, and by now the new file is complete and in place either way.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    remove_stale_temps(dir, &file_name);
    Ok(())
}

/// Removes the temporary files of earlier saves of `file_name` in `dir` that nobody is
/// writing any more: those of a process killed mid-save. Best effort (a file that cannot be
/// listed or removed stays); files of other targets and unrelated files are never touched.
fn remove_stale_temps(dir: &Path, file_name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, n)) = parse_temp_name(file_name, &name.to_string_lossy()) else {
            continue;
        };
        let path = entry.path();
        if pid == std::process::id() {
            // Ours: stale unless a save of this process is writing it now. Checked and
            // removed under the lock, so a save cannot start writing it in between.
            let writing = writing();
            if !writing.contains(&n) {
                let _ = fs::remove_file(&path);
            }
        } else if is_stale(&path, pid) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Whether another process's temporary file at `path`, named with `pid`, is a leftover.
///
/// On Linux (with `/proc` mounted) a file whose process is alive is kept: it may be writing
/// it. A file whose pid is not alive here is stale unless its file lock is held, which a
/// writer takes right after creating it (so a writer in another pid namespace sharing the
/// directory keeps its file). Where `/proc` cannot tell, a file is stale only when its lock
/// is free and it was last written more than [`STALE_AFTER`] ago: the age covers the moment
/// between a writer creating the file and locking it, and filesystems without locks. A pid
/// reused by a live process keeps a leftover until that process ends: a leftover kept too
/// long costs disk space, one removed too early would fail a save.
fn is_stale(path: &Path, pid: u32) -> bool {
    let alive = process_alive(pid);
    if alive == Some(true) {
        return false;
    }
    let Ok(f) = File::open(path) else {
        return false;
    };
    if f.try_lock().is_err() {
        return false;
    }
    drop(f);
    alive == Some(false)
        || fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER)
}

/// Whether process `pid` is alive, where the system can tell (Linux's `/proc`).
fn process_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") && Path::new("/proc/self").exists() {
        Some(Path::new(&format!("/proc/{pid}")).exists())
    } else {
        None
    }
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

/// [`load_safetensors`] reading each of the model's tensors from the key `key(name)`: loads a
/// file whose names are not vgrad's (a PyTorch module with its own attribute names; see
/// [`rename_keys`]).
///
/// # Errors
/// As [`load_safetensors`]; [`Error::Format`] also if two names map to one key. On any error
/// the model is unchanged.
pub fn load_safetensors_with<T: Element>(
    model: &mut dyn Module<T>,
    path: impl AsRef<Path>,
    key: impl Fn(&str) -> String,
) -> Result<()> {
    load_file(path.as_ref(), |bytes| {
        load_safetensors_bytes_with(model, bytes, key)
    })
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
/// The header is parsed as a stream and refused past the format's limit (100 MB); refusing
/// any file costs memory within a small multiple of its size.
///
/// # Errors
/// [`Error::Format`] for a truncated or corrupted file (a header longer than the format
/// allows or than the file, invalid JSON, offsets outside the data or not tiling it, a size
/// that disagrees with the shape, a tensor of more than 1024 dimensions), missing keys,
/// unexpected keys, a shape that differs from the model's, an unsupported dtype, or a
/// `num_batches_tracked` that is not a whole number from 0 to 2⁶³ − 1 (which
/// [`save_safetensors`] could not write back). The message names the offending keys. On any
/// error the model is unchanged.
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
    load_safetensors_bytes_with(model, bytes, |name| name.to_string())
}

/// [`load_safetensors_bytes`] reading each of the model's tensors from the key `key(name)`;
/// see [`load_safetensors_with`].
///
/// # Errors
/// As [`load_safetensors_bytes`] (messages name the file's keys); [`Error::Format`] also if
/// two names map to one key. On any error the model is unchanged.
pub fn load_safetensors_bytes_with<T: Element>(
    model: &mut dyn Module<T>,
    bytes: &[u8],
    key: impl Fn(&str) -> String,
) -> Result<()> {
    let (header, data) = split_file(bytes)?;
    let state = unique_state(&*model)?;
    let keys = unique_keys(&state, &key)?;
    // Keyed by the file's names from here on; the model's names come back for the swap.
    let (names, expected): (Vec<String>, Vec<(String, Tensor<T>)>) = state
        .into_iter()
        .zip(keys)
        .map(|((name, t), key)| (name, (key, t)))
        .unzip();
    let mut sink = ModelSink {
        slots: expected
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i))
            .collect(),
        expected: &expected,
        found: vec![None; expected.len()],
        twice: None,
        unexpected: Vec::new(),
    };
    parse_header(header, data.len(), &mut sink)?;

    let missing: Vec<&str> = expected
        .iter()
        .zip(&sink.found)
        .filter(|(_, f)| f.is_none())
        .map(|((n, _), _)| n.as_str())
        .collect();
    let mut unexpected = std::mem::take(&mut sink.unexpected);
    unexpected.sort_unstable();
    unexpected.dedup();
    if !missing.is_empty() || !unexpected.is_empty() {
        let mut msg = String::from("the file does not match the model:");
        if !missing.is_empty() {
            msg += &format!(" missing key(s) {}", listed(&missing));
        }
        if !unexpected.is_empty() {
            msg += &format!(" unexpected key(s) {}", listed(&unexpected));
        }
        return Err(format_err(msg));
    }
    if let Some(name) = sink.twice {
        return Err(format_err(format!("`{name}` appears twice in the header")));
    }

    let mut loaded = HashMap::with_capacity(expected.len());
    for (((key, current), name), found) in expected.iter().zip(&names).zip(sink.found) {
        let found = found.expect("missing keys were refused above");
        if let Some(shape) = found.other_shape {
            return Err(format_err(format!(
                "`{key}`: shape {shape:?} in the file, {:?} in the model",
                current.shape()
            )));
        }
        let bytes = &data[found.begin..found.end];
        let values = decode::<T>(name, found.dtype, bytes, current.numel())?;
        loaded.insert(name.clone(), Tensor::from_vec(values, current.shape())?);
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

/// `names` as a list for an error message: the first [`MAX_LISTED`], then a count.
fn listed<S: AsRef<str> + fmt::Debug>(names: &[S]) -> String {
    let shown = &names[..names.len().min(MAX_LISTED)];
    match names.len() - shown.len() {
        0 => format!("{shown:?}"),
        more => format!("{shown:?} and {more} more"),
    }
}

/// Where a model's tensor is in the file.
#[derive(Clone)]
struct Found {
    dtype: Dtype,
    begin: usize,
    end: usize,
    /// The file's shape when it differs from the model's.
    other_shape: Option<Vec<usize>>,
}

/// The model loader's view of the header: what it keeps is bounded by the model, except the
/// names it does not know (kept for the error message, a fraction of their entries' text).
struct ModelSink<'m, 'h, T> {
    slots: HashMap<&'m str, usize>,
    expected: &'m [(String, Tensor<T>)],
    found: Vec<Option<Found>>,
    twice: Option<String>,
    unexpected: Vec<Cow<'h, str>>,
}

impl<'h, T: Element> HeaderSink<'h> for ModelSink<'_, 'h, T> {
    fn tensor(&mut self, name: Cow<'h, str>, info: &EntryInfo<'_>) -> Result<()> {
        let Some(&i) = self.slots.get(&*name) else {
            self.unexpected.push(name);
            return Ok(());
        };
        if self.found[i].is_some() {
            self.twice.get_or_insert_with(|| name.into_owned());
            return Ok(());
        }
        let shape = self.expected[i].1.shape();
        self.found[i] = Some(Found {
            dtype: info.dtype,
            begin: info.begin,
            end: info.end,
            other_shape: (info.shape != shape).then(|| info.shape.to_vec()),
        });
        Ok(())
    }

    fn metadata(&mut self, _: Cow<'h, str>, _: Cow<'h, str>) -> Result<()> {
        Ok(())
    }
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
    let counter = is_counter(name);
    let mut out = Vec::with_capacity(numel);
    let mut push = |x: f64| {
        let v = T::of(x);
        if counter {
            // The file's value and the value as the model will hold it (rounded to `T`),
            // each checked as saving checks it: a counter that loads must save back, and a
            // fraction in the file is no count even where `T` rounds it to one.
            counter_value(name, x)?;
            counter_value(name, to64(&v))?;
        }
        out.push(v);
        Ok::<(), Error>(())
    };
    match dtype {
        Dtype::F32 => {
            for c in bytes.chunks_exact(4) {
                push(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))?;
            }
        }
        Dtype::F64 => {
            for c in bytes.chunks_exact(8) {
                push(f64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                ]))?;
            }
        }
        _ => {
            for c in bytes.chunks_exact(8) {
                let x = i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                push(x as f64)?;
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
/// part of it: an [`LrScheduler`](crate::nn::LrScheduler) is its base rates and step count,
/// which the training loop saves as it likes and restores with
/// [`set_epoch`](crate::nn::LrScheduler::set_epoch) (a
/// [`ReduceLrOnPlateau`](crate::nn::ReduceLrOnPlateau): its
/// [`state`](crate::nn::ReduceLrOnPlateau::state) and
/// [`from_state`](crate::nn::ReduceLrOnPlateau::from_state)).
///
/// # Errors
/// The errors of [`Optimizer::state_dict`]; [`Error::Format`] if a buffer is named
/// `__metadata__` (reserved by safetensors) or serialisation fails.
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
/// The file is checked against `model` while its header is read, so what loading keeps is
/// bounded by the model: every tensor must be named `<parameter>.<buffer>` after one of
/// `model`'s parameters and have that parameter's shape (as [`OptimizerState`] documents),
/// every step count must name one of its parameters, and there are at most 16 buffers a
/// parameter and 256 hyperparameters.
///
/// # Errors
/// [`Error::Format`] for a truncated or corrupted file (as for [`load_safetensors_bytes`]),
/// one without the `optimizer` entry (a model's weights, say), a hyperparameter or step
/// count that does not parse, a tensor or step count that names no parameter of `model`, a
/// buffer of another shape than its parameter, and the errors of
/// [`Optimizer::load_state_dict`]: another kind of optimiser, names that do not fit it. On
/// any error the optimiser is unchanged.
pub fn load_optimizer_bytes<T: Element>(
    opt: &mut dyn Optimizer<T>,
    model: &dyn Module<T>,
    bytes: &[u8],
) -> Result<()> {
    let (header, data) = split_file(bytes)?;
    let params = model.named_parameters();
    let mut sink = OptimizerSink {
        params: params
            .iter()
            .map(|(n, t)| (n.as_str(), t.shape()))
            .collect(),
        buffers_of: HashMap::new(),
        kind: None,
        hyper: BTreeMap::new(),
        steps: BTreeMap::new(),
        entries: Vec::new(),
        problem: None,
    };
    parse_header(header, data.len(), &mut sink)?;
    let kind = sink.kind.ok_or_else(|| {
        format_err("no `optimizer` entry in the metadata: not an optimiser state file")
    })?;
    if let Some(problem) = sink.problem {
        return Err(problem);
    }
    let mut state = OptimizerState {
        kind,
        hyper: sink.hyper,
        buffers: BTreeMap::new(),
        steps: sink.steps,
    };
    for (name, shape, dtype, range) in sink.entries {
        let numel = shape.iter().product();
        let values = decode::<T>(&name, dtype, &data[range.0..range.1], numel)?;
        let t = Tensor::from_vec(values, shape)?;
        if state.buffers.insert(name.to_string(), t).is_some() {
            return Err(format_err(format!("`{name}` appears twice in the header")));
        }
    }
    opt.load_state_dict(model, &state)
}

/// The most hyperparameters an optimiser state file may hold (vgrad's optimisers have at
/// most seven); it bounds what a crafted file's metadata can make the loader keep.
const MAX_HYPER: usize = 256;

/// The most buffers one parameter may have in an optimiser state file (vgrad's optimisers
/// keep at most three: RMSprop's `square_avg`, `momentum_buffer` and `grad_avg`); it bounds
/// what the loader keeps by the model.
const MAX_BUFFERS: usize = 16;

/// One buffer to decode: name, shape (its parameter's), dtype and byte range.
type BufferEntry<'m, 'h> = (Cow<'h, str>, &'m [usize], Dtype, (usize, usize));

/// The optimiser loader's view of the header: it keeps the buffers and step counts of the
/// model's parameters and the first problem found, which is reported after the check that
/// the file is optimiser state at all.
struct OptimizerSink<'m, 'h> {
    params: HashMap<&'m str, &'m [usize]>,
    /// How many buffers each parameter has so far.
    buffers_of: HashMap<&'m str, usize>,
    kind: Option<String>,
    hyper: BTreeMap<String, f64>,
    steps: BTreeMap<String, u64>,
    entries: Vec<BufferEntry<'m, 'h>>,
    problem: Option<Error>,
}

impl OptimizerSink<'_, '_> {
    fn problem(&mut self, msg: String) {
        self.problem.get_or_insert_with(|| format_err(msg));
    }
}

impl<'m, 'h> HeaderSink<'h> for OptimizerSink<'m, 'h> {
    fn tensor(&mut self, name: Cow<'h, str>, info: &EntryInfo<'_>) -> Result<()> {
        if self.problem.is_some() {
            return Ok(());
        }
        // Parameter names have dots in them; buffer names do not.
        let param = name
            .rsplit_once('.')
            .and_then(|(param, _)| self.params.get_key_value(param));
        let Some((&param_name, &shape)) = param else {
            self.problem(format!(
                "`{name}` is not one of the model's parameters followed by a buffer name"
            ));
            return Ok(());
        };
        if info.shape != shape {
            self.problem(format!(
                "`{name}` has shape {:?}, its parameter {shape:?}",
                info.shape
            ));
            return Ok(());
        }
        let count = self.buffers_of.entry(param_name).or_default();
        *count += 1;
        if *count > MAX_BUFFERS {
            self.problem(format!(
                "`{param_name}` has more than {MAX_BUFFERS} buffers"
            ));
            return Ok(());
        }
        self.entries
            .push((name, shape, info.dtype, (info.begin, info.end)));
        Ok(())
    }

    fn metadata(&mut self, key: Cow<'h, str>, text: Cow<'h, str>) -> Result<()> {
        if self.problem.is_some() {
            return Ok(());
        }
        let unparsable = || format!("metadata `{key}`: `{text}` is not a number");
        let twice = || format!("metadata `{key}` appears twice");
        if key == "optimizer" {
            if self.kind.replace(text.to_string()).is_some() {
                self.problem(twice());
            }
        } else if let Some(name) = key.strip_prefix("hyper.") {
            let Ok(x) = text.parse::<f64>() else {
                self.problem(unparsable());
                return Ok(());
            };
            if self.hyper.len() == MAX_HYPER {
                self.problem(format!("more than {MAX_HYPER} hyperparameters"));
            } else if self.hyper.insert(name.to_string(), x).is_some() {
                self.problem(twice());
            }
        } else if let Some(name) = key.strip_prefix("step.") {
            let Ok(n) = text.parse::<u64>() else {
                self.problem(unparsable());
                return Ok(());
            };
            if !self.params.contains_key(name) {
                self.problem(format!(
                    "unexpected step count for `{name}`: the model has no such parameter"
                ));
            } else if self.steps.insert(name.to_string(), n).is_some() {
                self.problem(twice());
            }
        }
        Ok(())
    }
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

// ---------------------------------------------------------------------------------------------
// Reading a file: the header, parsed as a stream.
//
// Loading is vgrad's own rather than the `safetensors` crate's: the crate deserialises the
// whole header into a map (through serde's buffered `flatten`), and a crafted header of
// `{"a":{"data_offsets":[0,0,0,…]}}` cost about 17x its size before it was refused. Here each
// header entry is checked as it is read and handed to the loader, which keeps only what it
// needs (offsets and the model's own tensors), so refusing any file costs a small multiple of
// its size. The checks are those of the format (and of the reference crate): a header within
// the format's length limit, `data_offsets` of exactly two numbers, each tensor's byte length
// equal to its element count times its dtype's width, and the tensors tiling the data with no
// gap or overlap.

/// The format's limit on the header's length: `MAX_HEADER_SIZE` in the reference
/// implementation (100 MB). Every safetensors reader refuses a longer header, so vgrad does
/// too, before parsing it.
const MAX_HEADER_LEN: u64 = 100_000_000;

/// The most dimensions a tensor in a file may have. The format sets no limit; this one bounds
/// the memory one shape costs while it is read (8 KiB), far above any real model's (PyTorch's
/// reductions stop at 64).
const MAX_RANK: usize = 1024;

/// How many names an error message lists before it only counts the rest.
const MAX_LISTED: usize = 20;

/// Splits a file into its JSON header and its data, checking the length prefix against the
/// format's limit and the bytes present.
fn split_file(bytes: &[u8]) -> Result<(&[u8], &[u8])> {
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
    if claimed > MAX_HEADER_LEN {
        return Err(format_err(format!(
            "the header claims {claimed} bytes, over the format's limit of {MAX_HEADER_LEN}"
        )));
    }
    let available = (bytes.len() - 8) as u64;
    if claimed > available {
        return Err(format_err(format!(
            "the header claims {claimed} bytes but only {available} follow: truncated or corrupted"
        )));
    }
    Ok(bytes[8..].split_at(claimed as usize))
}

/// One tensor's entry in the header, checked against the data's length.
struct EntryInfo<'s> {
    dtype: Dtype,
    shape: &'s [usize],
    /// Byte range in the data section.
    begin: usize,
    end: usize,
}

/// What a loader does with the header's entries as they are parsed. An `Err` stops the parse
/// and is the load's error.
trait HeaderSink<'h> {
    fn tensor(&mut self, name: Cow<'h, str>, info: &EntryInfo<'_>) -> Result<()>;
    fn metadata(&mut self, key: Cow<'h, str>, value: Cow<'h, str>) -> Result<()>;
}

/// Parses `header` (the JSON after the length prefix) for a data section of `data_len` bytes,
/// handing every entry to `sink`, then checks that the tensors tile the data exactly.
fn parse_header<'h>(
    header: &'h [u8],
    data_len: usize,
    sink: &mut dyn HeaderSink<'h>,
) -> Result<()> {
    let mut p = Parse {
        sink,
        data_len,
        spans: Vec::new(),
        shape: Vec::new(),
        failed: None,
        started: false,
        seen_metadata: false,
    };
    let mut de = serde_json::Deserializer::from_slice(header);
    let parsed = de::Deserializer::deserialize_map(&mut de, &mut p).and_then(|()| de.end());
    if let Some(e) = p.failed.take() {
        return Err(e);
    }
    if let Err(e) = parsed {
        return Err(format_err(if !e.is_data() {
            format!("the header is not valid JSON: {e}")
        } else if !p.started {
            format!("the header is not a JSON object: {e}")
        } else {
            format!("not a valid safetensors file: {e}")
        }));
    }
    // Sorted by start, each tensor must begin where the previous ended (no gap, no overlap:
    // an overlap would let one stretch of data be decoded many times over).
    p.spans.sort_unstable();
    let mut at = 0;
    for &(begin, end) in &p.spans {
        if begin != at {
            return Err(format_err(format!(
                "not a valid safetensors file: the tensors' data_offsets do not tile the data \
                 ({} at byte {at})",
                if begin < at { "an overlap" } else { "a gap" }
            )));
        }
        at = end;
    }
    if at != data_len {
        return Err(format_err(format!(
            "not a valid safetensors file: {} of the {data_len} data bytes belong to no tensor",
            data_len - at
        )));
    }
    Ok(())
}

/// The parse's state: the serde visitor of the header object.
struct Parse<'p, 'h> {
    sink: &'p mut dyn HeaderSink<'h>,
    data_len: usize,
    /// Every tensor's byte range, for the tiling check: 16 bytes an entry, a fraction of the
    /// entry's own text.
    spans: Vec<(usize, usize)>,
    /// The current entry's shape, reused from entry to entry.
    shape: Vec<usize>,
    /// The error that stopped the parse, when it is ours rather than serde's.
    failed: Option<Error>,
    /// Whether the header turned out to be an object (for the error message).
    started: bool,
    seen_metadata: bool,
}

impl<'h> Parse<'_, 'h> {
    /// Records `e` as the load's error and returns the serde error that stops the parse.
    fn stop<E: de::Error>(&mut self, e: Error) -> E {
        self.failed = Some(e);
        E::custom("stopped")
    }

    fn invalid<E: de::Error>(&mut self, msg: String) -> E {
        self.stop(format_err(format!("not a valid safetensors file: {msg}")))
    }

    /// Checks one tensor's entry against the data and hands it to the sink.
    fn entry<E: de::Error>(
        &mut self,
        name: Cow<'h, str>,
        dtype: Dtype,
        (begin, end): (u64, u64),
    ) -> std::result::Result<(), E> {
        let data_len = self.data_len as u64;
        if let Some(past) = [begin, end].into_iter().find(|&o| o > data_len) {
            let msg = format!(
                "`{name}`: data offset {past} is past the end of the {data_len} data bytes"
            );
            return Err(self.invalid(msg));
        }
        if begin > end {
            return Err(self.invalid(format!(
                "`{name}`: data_offsets [{begin}, {end}] run backwards"
            )));
        }
        let (begin, end) = (begin as usize, end as usize);
        let bytes = self
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.bitsize()))
            .filter(|bits| bits % 8 == 0)
            .map(|bits| bits / 8);
        if bytes != Some(end - begin) {
            let msg = format!(
                "`{name}`: {dtype} of shape {:?} does not fill its {} data bytes",
                self.shape,
                end - begin
            );
            return Err(self.invalid(msg));
        }
        self.spans.push((begin, end));
        let info = EntryInfo {
            dtype,
            shape: &self.shape,
            begin,
            end,
        };
        let handled = self.sink.tensor(name, &info);
        handled.map_err(|e| self.stop(e))
    }
}

impl<'h> de::Visitor<'h> for &mut Parse<'_, 'h> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: de::MapAccess<'h>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        self.started = true;
        while let Some(Text(name)) = map.next_key()? {
            if name == "__metadata__" {
                if std::mem::replace(&mut self.seen_metadata, true) {
                    return Err(self.invalid("`__metadata__` appears twice".into()));
                }
                map.next_value_seed(MetadataSeed(&mut *self))?;
            } else {
                let (dtype, offsets) = map.next_value_seed(EntrySeed {
                    name: &name,
                    shape: &mut self.shape,
                })?;
                self.entry(name, dtype, offsets)?;
            }
        }
        Ok(())
    }
}

/// A JSON string, borrowed from the header unless it has escapes.
struct Text<'h>(Cow<'h, str>);

impl<'h> de::Deserialize<'h> for Text<'h> {
    fn deserialize<D: de::Deserializer<'h>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'h> de::Visitor<'h> for V {
            type Value = Text<'h>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'h str) -> std::result::Result<Text<'h>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Text<'h>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// `__metadata__`: `null` or an object of strings, each pair handed to the sink.
struct MetadataSeed<'a, 'p, 'h>(&'a mut Parse<'p, 'h>);

impl<'h> de::DeserializeSeed<'h> for MetadataSeed<'_, '_, 'h> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'h>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'h> de::Visitor<'h> for MetadataSeed<'_, '_, 'h> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of strings (`__metadata__`)")
    }
    fn visit_none<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'h>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: de::MapAccess<'h>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some((Text(key), Text(value))) = map.next_entry()? {
            if let Err(e) = self.0.sink.metadata(key, value) {
                return Err(self.0.stop(e));
            }
        }
        Ok(())
    }
}

/// One tensor's entry: `{"dtype": …, "shape": […], "data_offsets": [begin, end]}`, other
/// fields ignored (as the reference implementation ignores them). The shape goes to `shape`.
struct EntrySeed<'a> {
    name: &'a str,
    shape: &'a mut Vec<usize>,
}

impl<'h> de::DeserializeSeed<'h> for EntrySeed<'_> {
    type Value = (Dtype, (u64, u64));
    fn deserialize<D: de::Deserializer<'h>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'h> de::Visitor<'h> for EntrySeed<'_> {
    type Value = (Dtype, (u64, u64));
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an object with dtype, shape and data_offsets for `{}`",
            self.name
        )
    }
    fn visit_map<A: de::MapAccess<'h>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        use de::Error as _;
        let name = self.name;
        let (mut dtype, mut shape, mut offsets) = (None, false, None);
        let twice = |field: &str| A::Error::custom(format!("`{name}`: `{field}` appears twice"));
        while let Some(Text(field)) = map.next_key()? {
            match &*field {
                "dtype" if dtype.is_some() => return Err(twice("dtype")),
                "dtype" => dtype = Some(map.next_value::<Dtype>()?),
                "shape" if shape => return Err(twice("shape")),
                "shape" => {
                    shape = true;
                    map.next_value_seed(ShapeSeed {
                        name,
                        shape: &mut *self.shape,
                    })?;
                }
                "data_offsets" if offsets.is_some() => return Err(twice("data_offsets")),
                "data_offsets" => offsets = Some(map.next_value_seed(OffsetsSeed(name))?),
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let missing = |field: &str| A::Error::custom(format!("`{name}`: no `{field}`"));
        let dtype = dtype.ok_or_else(|| missing("dtype"))?;
        if !shape {
            return Err(missing("shape"));
        }
        Ok((dtype, offsets.ok_or_else(|| missing("data_offsets"))?))
    }
}

/// A shape: at most [`MAX_RANK`] sizes, each fitting `usize`.
struct ShapeSeed<'a> {
    name: &'a str,
    shape: &'a mut Vec<usize>,
}

impl<'h> de::DeserializeSeed<'h> for ShapeSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'h>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'h> de::Visitor<'h> for ShapeSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of sizes for `{}`", self.name)
    }
    fn visit_seq<A: de::SeqAccess<'h>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        use de::Error as _;
        self.shape.clear();
        while let Some(d) = seq.next_element::<u64>()? {
            if self.shape.len() == MAX_RANK {
                return Err(A::Error::custom(format!(
                    "`{}`: more than {MAX_RANK} dimensions",
                    self.name
                )));
            }
            let d = usize::try_from(d)
                .map_err(|_| A::Error::custom(format!("`{}`: size {d} too large", self.name)))?;
            self.shape.push(d);
        }
        Ok(())
    }
}

/// `data_offsets`: exactly two numbers, read without collecting a list of any length.
struct OffsetsSeed<'a>(&'a str);

impl<'h> de::DeserializeSeed<'h> for OffsetsSeed<'_> {
    type Value = (u64, u64);
    fn deserialize<D: de::Deserializer<'h>>(
        self,
        d: D,
    ) -> std::result::Result<(u64, u64), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'h> de::Visitor<'h> for OffsetsSeed<'_> {
    type Value = (u64, u64);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "two data offsets for `{}`", self.0)
    }
    fn visit_seq<A: de::SeqAccess<'h>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(u64, u64), A::Error> {
        use de::Error as _;
        let wrong = || A::Error::custom(format!("`{}`: data_offsets must be two numbers", self.0));
        let begin = seq.next_element::<u64>()?.ok_or_else(wrong)?;
        let end = seq.next_element::<u64>()?.ok_or_else(wrong)?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(wrong());
        }
        Ok((begin, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header whose offsets add up past `u64::MAX`: eight U8 tensors of 2^61 − 1 bytes.
    /// The `safetensors` crate's own reader overflows on it; vgrad's refuses it.
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
