//! The crate's one error type.
//!
//! # Policy
//!
//! * Anything a caller configures or loads — tensor construction from data, layer and optimiser
//!   configuration, files — returns [`Result`] with this [`Error`]. These failures depend on
//!   input the program did not control, so the program must be able to recover.
//! * Shape misuse inside the maths (adding `[2, 3]` to `[4]`, a matmul with mismatched inner
//!   dimensions) is a bug in the calling code, like indexing a slice out of bounds. Those
//!   operations panic with a message naming the op and both shapes, and document it under
//!   `# Panics`. There is no `try_` twin that still panics.

use std::fmt;

/// Everything that can go wrong in a fallible vgrad call.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A buffer's length does not match the number of elements its shape implies.
    LengthMismatch {
        /// The requested shape.
        shape: Vec<usize>,
        /// `shape.iter().product()`.
        expected: usize,
        /// The length actually supplied.
        actual: usize,
    },
    /// A shape argument is invalid for the operation (for example, a reshape that changes the
    /// number of elements, or a layer built with zero features).
    Shape(String),
    /// A configuration value is out of its valid range.
    Config(String),
    /// A checkpoint or data file is malformed, truncated, or does not match the model.
    Format(String),
    /// A tensor's buffer could not be allocated: the shape is valid, the memory is not there.
    Alloc {
        /// The requested shape.
        shape: Vec<usize>,
        /// The bytes it needs.
        bytes: usize,
    },
    /// The call is not valid in the current state of the object it is made on (for example a
    /// second [`backward_step`](crate::nn::Optimizer::backward_step) through a tape whose
    /// graph the first one consumed).
    State(String),
    /// An operating-system I/O failure, with the path involved.
    ///
    /// There is deliberately no `From<std::io::Error>`: every I/O error vgrad reports names the
    /// file it was reading or writing, and a blanket conversion would let `?` drop that path.
    Io {
        /// The file that was being read or written.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// `Result` with vgrad's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LengthMismatch {
                shape,
                expected,
                actual,
            } => write!(
                f,
                "a tensor of shape {shape:?} needs {expected} elements, but {actual} were given"
            ),
            Error::Shape(msg) => write!(f, "invalid shape: {msg}"),
            Error::Config(msg) => write!(f, "invalid configuration: {msg}"),
            Error::Format(msg) => write!(f, "malformed file: {msg}"),
            Error::Alloc { shape, bytes } => write!(
                f,
                "cannot allocate {bytes} bytes for a tensor of shape {shape:?}"
            ),
            Error::State(msg) => write!(f, "{msg}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
