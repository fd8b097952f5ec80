//! The buffer pool as a training loop sees it: memory held from one step to the next.
//!
//! Moved here from a unit test in `tensor/pool.rs`, which built a whole `nn` training loop to
//! check a `tensor` detail; from outside, the pool is seen through the bytes the thread holds,
//! which a counting allocator measures.

use rand::{rngs::StdRng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use vgrad::nn::{
    cross_entropy, Activation, BatchNorm1d, Ctx, Linear, Module, Optimizer, Reduction, Residual,
    Sequential, Sgd, SgdConfig,
};
use vgrad::{Tape, Tensor};

/// The system allocator, counting the bytes the current thread holds.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    // `try_with`: the allocator runs while thread-locals are torn down too.
    let _ = LIVE.try_with(|l| l.set(l.get() + n));
}

// SAFETY: every method forwards to `System` with its own arguments unchanged, so `System`'s
// guarantees are ours; the counting touches only a const-initialised thread-local, which never
// allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            add(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            add(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        // SAFETY: forwarded unchanged; `p` came from this allocator, that is from `System`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; `p` came from `System` with layout `l`.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            add(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes the calling thread holds.
fn held() -> isize {
    LIVE.with(Cell::get)
}

/// A training step allocates the same buffers every step, some through the pool and some
/// (BatchNorm's per-channel vectors, once) straight from the allocator: the pool must not grow
/// from one step to the next. It did, by the per-channel vectors, until resbn's f64 run reached
/// 212 MiB after 3,000 steps.
#[test]
fn training_steps_with_batchnorm_do_not_grow_the_pool() {
    let mut rng = StdRng::seed_from_u64(0);
    let (n, w) = (16, 128);
    let branch = Sequential::new()
        .push(Linear::<f64>::new(w, w, &mut rng).unwrap())
        .push(Activation::Relu)
        .push(BatchNorm1d::new(w).unwrap())
        .push(Linear::new(w, w, &mut rng).unwrap());
    let mut model = Sequential::new()
        .push(Residual::new(branch))
        .push(Linear::new(w, 10, &mut rng).unwrap());
    model.train();
    let x = Tensor::from_vec(
        (0..n * w).map(|i| (i as f64 * 0.37).sin()).collect(),
        &[n, w],
    )
    .unwrap();
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.01,
        ..Default::default()
    })
    .unwrap();
    let mut step = || {
        let grads = {
            let tape = Tape::new();
            let mut ctx = Ctx::new(&tape);
            let y = model.forward(&mut ctx, tape.constant(x.clone()));
            let loss = cross_entropy(y, &labels, Reduction::Mean);
            ctx.param_grads(&loss.backward())
        };
        opt.step(&mut model, &grads).unwrap();
    };
    for _ in 0..3 {
        step();
    }
    let settled = held();
    for _ in 0..30 {
        step();
    }
    assert_eq!(held(), settled, "bytes held after 3 steps vs after 33");
}
