//! vgrad: tape-based reverse-mode autodiff (crate docs are written in full once the engine lands).
#![deny(missing_docs)]

pub mod data;
pub mod error;
mod gradcheck;
mod ops;
mod tape;
pub mod tensor;

pub use error::{Error, Result};
pub use gradcheck::{gradcheck, GradcheckOptions, GradcheckReport, JacobianEntry};
pub use ops::{CustomOp, GeluApprox};
pub use tape::{Anomaly, Gradients, GraphGradients, HookHandle, Phase, Tape, Var};
pub use tensor::{Element, Shape, Tensor};
