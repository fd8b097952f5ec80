//! The adversary, kept in the test suite (issue 16): generated bad inputs for every class of
//! defect an adversarial review found, each bounded in memory and time.
//!
//! One module per class. The counting allocator below lets a test bound the peak memory a
//! rejected input costs; it counts per thread, so tests running in parallel do not see each
//! other's allocations.

#[path = "../common/meter.rs"]
mod meter;

mod checkpoint;
mod engine;
mod optim;
mod shapes;
mod softmax;
