//! Recycled tensor buffers: when the last tensor sharing a buffer is dropped, the buffer goes to
//! a per-thread pool keyed by its capacity, and the next kernel that needs that many elements
//! takes it back instead of calling the allocator.
//!
//! Why: a training step allocates the same buffers every step and frees them all when its tape
//! is dropped. Handed back to `malloc`, the freed top of the heap is returned to the kernel
//! (glibc trims it) and the next step faults every page in again, zeroed: page faults and
//! `malloc` were 10-20% of a deep or wide training step. Recycled, the pages stay mapped and
//! warm in cache.
//!
//! Bounds: a buffer joins the pool only if it holds at least [`MIN_ELEMS`] elements, and only
//! if the pool handed out a buffer of its capacity that has not come back yet. So a size is pooled
//! at most as often as kernels asked the pool for it: a buffer allocated elsewhere (a user's `Vec`,
//! a kernel that called the allocator itself) cannot pile up, step after step, in a size that
//! nothing takes back. A step that reuses its sizes keeps at most its own peak in flight, live or
//! pooled: recycling adds no memory beyond what the step already used at once. When the pooled
//! bytes of one thread and element type would pass [`LIMIT_BYTES`], or it tracks more than
//! [`MAX_GROUPS`] sizes, the pool is emptied. [`release_buffers`] empties the calling thread's
//! pools.

use super::Element;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

/// Buffers smaller than this go straight back to the allocator: for them a pool lookup saves
/// nothing.
const MIN_ELEMS: usize = 64;

/// Most bytes one thread keeps pooled per element type.
const LIMIT_BYTES: usize = 1 << 28;

/// Most distinct capacities one thread's pool tracks per element type. A network uses a handful;
/// a program that allocates ever-new sizes gets its pool emptied rather than scanned forever.
const MAX_GROUPS: usize = 64;

/// The buffers of one capacity: those free for reuse, and how many the pool has handed out
/// (recycled or new) that have not come back. Only that many may come back into it.
struct Group<T> {
    cap: usize,
    free: Vec<Vec<T>>,
    out: usize,
}

/// Free buffers of one element type, grouped by capacity. A handful of distinct sizes recur in a
/// network, so a linear scan over the groups is as fast as hashing.
pub(crate) struct Pool<T> {
    groups: Vec<Group<T>>,
    bytes: usize,
}

impl<T> Pool<T> {
    pub(crate) const fn new() -> Self {
        Pool {
            groups: Vec::new(),
            bytes: 0,
        }
    }

    fn clear(&mut self) {
        self.groups.clear();
        self.bytes = 0;
    }

    /// A free buffer of capacity `len` if there is one. Either way the pool counts one more
    /// buffer of that capacity as handed out: the caller allocates it when this returns `None`.
    fn take(&mut self, len: usize) -> Option<Vec<T>> {
        let i = match self.groups.iter().position(|g| g.cap == len) {
            Some(i) => i,
            None => {
                if self.groups.len() == MAX_GROUPS {
                    self.clear();
                }
                self.groups.push(Group {
                    cap: len,
                    free: Vec::new(),
                    out: 0,
                });
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[i];
        g.out += 1;
        let mut v = g.free.pop()?;
        self.bytes -= len * std::mem::size_of::<T>();
        v.clear();
        Some(v)
    }

    /// Keeps `v` for reuse if the pool handed out a buffer of its capacity that is still out;
    /// otherwise (or past the byte limit) `v` is freed.
    fn give(&mut self, v: Vec<T>) {
        let cap = v.capacity();
        let size = cap * std::mem::size_of::<T>();
        let Some(i) = self.groups.iter().position(|g| g.cap == cap && g.out > 0) else {
            return;
        };
        if self.bytes + size > LIMIT_BYTES {
            self.clear();
            return;
        }
        let g = &mut self.groups[i];
        g.out -= 1;
        g.free.push(v);
        self.bytes += size;
    }
}

/// An empty `Vec` with room for exactly `len` elements, recycled when the pool has one.
#[inline]
pub(crate) fn with_capacity<T: Element>(len: usize) -> Vec<T> {
    // The size test inline, the pool lookup out of line: the 1-element tensors of the per-op
    // overhead benchmark should pay one comparison.
    if len >= MIN_ELEMS {
        if let Some(v) = take::<T>(len) {
            return v;
        }
    }
    Vec::with_capacity(len)
}

/// [`with_capacity`] that reports an allocation failure as `None` instead of aborting: for
/// constructors that return `Result`.
pub(crate) fn try_with_capacity<T: Element>(len: usize) -> Option<Vec<T>> {
    if len >= MIN_ELEMS {
        if let Some(v) = take::<T>(len) {
            return Some(v);
        }
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    Some(v)
}

#[inline(never)]
fn take<T: Element>(len: usize) -> Option<Vec<T>> {
    // `try_with`: during thread teardown the pool may already be gone.
    T::pool()
        .try_with(|p| p.borrow_mut().take(len))
        .ok()
        .flatten()
}

/// A recycled `Vec` of `len` elements written entirely by `fill`, without zero-filling it
/// first: output buffers that a kernel writes whole (a product, a softmax, a permute). Every
/// caller's `fill` must write all `len` slots of the slice it is given; each call site says
/// how it does.
pub(crate) fn filled_by<T: Element>(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<T>]),
) -> Vec<T> {
    let mut v = with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the callers' `fill` writes all `len` slots (their comments: gemm_into writes each
    // of its m·n outputs, the batched loop covers every matrix, the softmax rows and blocks
    // and the permute's tiles cover the whole tensor).
    unsafe { v.set_len(len) };
    v
}

/// `n` copies of `value` in a recycled buffer when there is one.
pub(crate) fn filled<T: Element>(n: usize, value: T) -> Vec<T> {
    let mut v = with_capacity(n);
    v.resize(n, value);
    v
}

/// Frees every tensor buffer the calling thread holds for reuse. vgrad keeps the buffers of
/// dropped tensors to hand them to the next tensors of the same size (a training step reuses
/// its sizes every step); call this after training to give that memory back.
///
/// # Example
/// ```
/// use vgrad::Tensor;
/// let t = Tensor::<f32>::zeros(&[256, 256]);
/// drop(t); // its buffer is kept for the next 256×256 tensor
/// vgrad::tensor::release_buffers(); // ...or freed now
/// ```
pub fn release_buffers() {
    fn clear<T: Element>() {
        let _ = T::pool().try_with(|p| p.borrow_mut().clear());
    }
    clear::<f32>();
    clear::<f64>();
}

/// A tensor's elements: a `Vec` that returns to its thread's pool when dropped. The pool is
/// reached through a function pointer stored at construction, so `Buffer<T>` (and `Tensor<T>`)
/// need no `T: Element` bound.
pub(crate) struct Buffer<T> {
    data: Vec<T>,
    recycle: fn(Vec<T>),
}

impl<T: Element> Buffer<T> {
    #[inline]
    pub(crate) fn new(data: Vec<T>) -> Self {
        Buffer {
            data,
            recycle: give::<T>,
        }
    }
}

// Only for `Arc::make_mut` in `Tensor::data_mut`, which clones when another tensor shares the
// buffer; `data_mut` asks for it only as the sole owner, so this runs only if another thread
// upgraded a weak handle in between.
impl<T: Clone> Clone for Buffer<T> {
    fn clone(&self) -> Self {
        Buffer {
            data: self.data.clone(),
            recycle: self.recycle,
        }
    }
}

impl<T> Deref for Buffer<T> {
    type Target = Vec<T>;
    #[inline]
    fn deref(&self) -> &Vec<T> {
        &self.data
    }
}

impl<T> DerefMut for Buffer<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.data
    }
}

impl<T> Drop for Buffer<T> {
    #[inline]
    fn drop(&mut self) {
        if self.data.capacity() >= MIN_ELEMS {
            (self.recycle)(std::mem::take(&mut self.data));
        }
    }
}

/// Puts `v` in the calling thread's pool; if the pool is gone (thread teardown) or busy, `v` is
/// simply freed.
fn give<T: Element>(v: Vec<T>) {
    let _ = T::pool().try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.give(v);
        }
    });
}

thread_local! {
    pub(crate) static POOL_F32: RefCell<Pool<f32>> = const { RefCell::new(Pool::new()) };
    pub(crate) static POOL_F64: RefCell<Pool<f64>> = const { RefCell::new(Pool::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_handed_to_the_next_tensor_of_its_size() {
        release_buffers();
        let v: Vec<f32> = with_capacity(1000);
        let addr = v.as_ptr();
        drop(Buffer::new(v));
        let w: Vec<f32> = with_capacity(1000);
        assert_eq!(w.as_ptr(), addr, "same size: recycled");
        assert!(w.is_empty() && w.capacity() == 1000);
        let x: Vec<f32> = with_capacity(999);
        assert_ne!(x.as_ptr(), addr);
        // f64 buffers live in their own pool.
        drop(Buffer::new(w));
        let y: Vec<f64> = with_capacity(1000);
        assert_ne!(y.as_ptr() as *const f32, addr);
        drop(Buffer::new(x));
        assert!(POOL_F32.with(|p| p.borrow().bytes) > 0);
        release_buffers();
        assert_eq!(POOL_F32.with(|p| p.borrow().bytes), 0, "released");
        assert!(POOL_F32.with(|p| p.borrow().groups.is_empty()));
    }

    #[test]
    fn small_buffers_are_not_pooled_and_the_pool_is_bounded() {
        let mut p = Pool::<f32>::new();
        let half = LIMIT_BYTES / 4 / 2;
        assert!(p.take(half).is_none() && p.take(half).is_none());
        p.give(Vec::with_capacity(half));
        p.give(Vec::with_capacity(half));
        assert_eq!(p.bytes, LIMIT_BYTES);
        // Past the limit: the pool is emptied and the newcomer freed.
        assert!(p.take(100).is_none());
        p.give(Vec::with_capacity(100));
        assert_eq!(p.bytes, 0);
        assert!(p.take(half).is_none());
        let before = POOL_F32.with(|p| p.borrow().bytes);
        drop(Buffer::new(Vec::<f32>::with_capacity(MIN_ELEMS - 1)));
        assert_eq!(POOL_F32.with(|p| p.borrow().bytes), before);
    }

    #[test]
    fn only_as_many_buffers_come_back_as_the_pool_handed_out() {
        let mut p = Pool::<f64>::new();
        // Never asked for: a buffer allocated elsewhere is freed, not kept.
        p.give(Vec::with_capacity(500));
        assert_eq!(p.bytes, 0);
        // Two handed out, three of that capacity dropped: two are kept.
        assert!(p.take(500).is_none() && p.take(500).is_none());
        for _ in 0..3 {
            p.give(Vec::with_capacity(500));
        }
        assert_eq!(p.bytes, 2 * 500 * 8);
        // Taking one back and returning it keeps the count.
        let v = p.take(500).expect("a free buffer");
        p.give(v);
        assert_eq!(p.bytes, 2 * 500 * 8);
    }

    #[test]
    fn the_pool_tracks_a_bounded_number_of_sizes() {
        let mut p = Pool::<f32>::new();
        for len in 0..MAX_GROUPS + 10 {
            assert!(p.take(MIN_ELEMS + len).is_none());
        }
        assert!(p.groups.len() <= MAX_GROUPS);
    }
}
