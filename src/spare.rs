//! Empty hash maps kept per thread for the next training step.
//!
//! Why: the README's loop builds three maps of about one entry per parameter every step (the
//! sweep's gradients, `ParamGrads`, the tape's released parameters) and frees them at its end.
//! Each is a few kilobytes, past `malloc`'s small-size bins, so each allocation went through
//! its large-chunk path and a consolidation of the freed small chunks: about 1% of a 64-wide
//! 50-layer step in `perf` (`_int_malloc`, `malloc_consolidate`, the rehash of a map grown from
//! empty). Handed back empty here instead, the next step's map of the same type starts with the
//! capacity it needed last time. The node list of a tape is recycled the same way (`tape.rs`).
//!
//! Bounds: at most [`MAX_SPARES`] maps per thread, each of at most [`MAX_CAPACITY`] entries; a
//! map over that is freed, so a one-off huge model does not pin its maps' memory.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Most maps one thread keeps (three types per element type are in use).
const MAX_SPARES: usize = 8;

/// Largest capacity kept, in entries.
const MAX_CAPACITY: usize = 1 << 14;

thread_local! {
    static SPARES: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// An empty map of this type: a spare one if the thread has one, else a new one.
pub(crate) fn take_map<K: 'static, V: 'static, S: BuildHasher + Default + 'static>(
) -> HashMap<K, V, S> {
    SPARES
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let i = s.iter().position(|b| b.is::<HashMap<K, V, S>>())?;
            s.swap_remove(i).downcast().ok().map(|b| *b)
        })
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Empties `map` and keeps it for [`take_map`], unless it is too large or the thread keeps
/// enough spares already (then it is freed).
pub(crate) fn put_map<K: 'static, V: 'static, S: 'static>(mut map: HashMap<K, V, S>) {
    if map.capacity() == 0 || map.capacity() > MAX_CAPACITY {
        return;
    }
    map.clear();
    let _ = SPARES.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < MAX_SPARES {
                s.push(Box::new(map));
            }
        }
    });
}

/// A map that goes back to the thread's spares when dropped ([`put_map`]) and starts as a
/// spare ([`take_map`]): a field of this type recycles its map without a `Drop` on the struct
/// that holds it (which would make a borrowing struct, like a sweep's `Gradients`, live until
/// the end of its enclosing block in the borrow checker's eyes, breaking
/// `ctx.param_grads(&loss.backward())` as a block's last expression).
pub(crate) struct Recycled<K: 'static, V: 'static, S: Default + 'static>(HashMap<K, V, S>);

impl<K: 'static, V: 'static, S: BuildHasher + Default + 'static> Default for Recycled<K, V, S> {
    fn default() -> Self {
        Recycled(take_map())
    }
}

impl<K, V, S: Default> std::ops::Deref for Recycled<K, V, S> {
    type Target = HashMap<K, V, S>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<K, V, S: Default> std::ops::DerefMut for Recycled<K, V, S> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<K, V, S: Default> Drop for Recycled<K, V, S> {
    fn drop(&mut self) {
        put_map(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::FastIdMap;

    #[test]
    fn a_returned_map_comes_back_empty_with_its_capacity() {
        let mut m: FastIdMap<usize, String> = take_map();
        m.extend((0..100).map(|i| (i, i.to_string())));
        let cap = m.capacity();
        put_map(m);
        let m: FastIdMap<usize, String> = take_map();
        assert!(m.is_empty());
        assert_eq!(m.capacity(), cap);
        // Another type is not handed this one.
        let other: FastIdMap<usize, u8> = take_map();
        assert_eq!(other.capacity(), 0);
    }

    #[test]
    fn spares_are_bounded_in_number_and_size() {
        let mut huge: FastIdMap<usize, u8> = FastIdMap::default();
        huge.reserve(MAX_CAPACITY + 1);
        put_map(huge);
        let back: FastIdMap<usize, u8> = take_map();
        assert_eq!(back.capacity(), 0, "a map over the size bound is not kept");
        for _ in 0..3 * MAX_SPARES {
            let mut m: FastIdMap<u32, u32> = FastIdMap::default();
            m.insert(1, 1);
            put_map(m);
        }
        let kept = SPARES.with(|s| s.borrow().len());
        assert!(kept <= MAX_SPARES, "{kept} spares kept");
    }
}
