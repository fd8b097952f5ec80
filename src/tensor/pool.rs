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
//! Bounds: a buffer joins the pool only if it holds at least [`MIN_ELEMS`] elements; when the
//! pooled bytes of one thread and element type would pass [`LIMIT_BYTES`], the pool is emptied
//! first, so sizes that stopped being used cannot pile up. A step that reuses its sizes keeps
//! at most its own peak in flight, live or pooled: recycling adds no memory beyond what the
//! step already used at once. [`release_buffers`] empties the calling thread's pools.

use super::Element;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers smaller than this go straight back to the allocator: for them a pool lookup saves
/// nothing.
const MIN_ELEMS: usize = 64;

/// Most bytes one thread keeps pooled per element type.
const LIMIT_BYTES: usize = 1 << 28;

/// Free buffers of one element type, grouped by capacity. A handful of distinct sizes recur in a
/// network, so a linear scan over the groups is as fast as hashing.
pub(crate) struct Pool<T> {
    groups: Vec<(usize, Vec<Vec<T>>)>,
    bytes: usize,
}

impl<T> Pool<T> {
    pub(crate) const fn new() -> Self {
        Pool {
            groups: Vec::new(),
            bytes: 0,
        }
    }

    fn take(&mut self, len: usize) -> Option<Vec<T>> {
        let (_, free) = self.groups.iter_mut().find(|(cap, _)| *cap == len)?;
        let mut v = free.pop()?;
        self.bytes -= len * std::mem::size_of::<T>();
        v.clear();
        Some(v)
    }

    fn give(&mut self, v: Vec<T>) {
        let cap = v.capacity();
        let size = cap * std::mem::size_of::<T>();
        if self.bytes + size > LIMIT_BYTES {
            self.groups.clear();
            self.bytes = 0;
            if size > LIMIT_BYTES {
                return;
            }
        }
        self.bytes += size;
        match self.groups.iter_mut().find(|(c, _)| *c == cap) {
            Some((_, free)) => free.push(v),
            None => self.groups.push((cap, vec![v])),
        }
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

#[inline(never)]
fn take<T: Element>(len: usize) -> Option<Vec<T>> {
    // `try_with`: during thread teardown the pool may already be gone.
    T::pool()
        .try_with(|p| p.borrow_mut().take(len))
        .ok()
        .flatten()
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
        let _ = T::pool().try_with(|p| {
            let mut p = p.borrow_mut();
            p.groups.clear();
            p.bytes = 0;
        });
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
        p.give(Vec::with_capacity(LIMIT_BYTES / 4 / 2));
        p.give(Vec::with_capacity(LIMIT_BYTES / 4 / 2));
        assert_eq!(p.bytes, LIMIT_BYTES);
        // Past the limit: the pool is emptied, then holds only the newcomer.
        p.give(Vec::with_capacity(100));
        assert_eq!(p.bytes, 400);
        assert!(p.take(LIMIT_BYTES / 4 / 2).is_none());
        assert_eq!(p.take(100).map(|v| v.capacity()), Some(100));
        assert_eq!(p.bytes, 0);
        let before = POOL_F32.with(|p| p.borrow().bytes);
        drop(Buffer::new(Vec::<f32>::with_capacity(MIN_ELEMS - 1)));
        assert_eq!(POOL_F32.with(|p| p.borrow().bytes), before);
    }
}
