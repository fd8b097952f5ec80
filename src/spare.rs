//! Empty containers kept per thread for the next training step.
//!
//! Why: the README's loop builds three maps of about one entry per parameter every step (the
//! sweep's gradients, `ParamGrads`, the tape's released parameters) and a tape's node list, and
//! frees them at its end. Each is a few kilobytes or more, past `malloc`'s small-size bins, so
//! each allocation went through its large-chunk path and a consolidation of the freed small
//! chunks: about 1% of a 64-wide 50-layer step in `perf` (`_int_malloc`, `malloc_consolidate`,
//! the rehash of a map grown from empty), and for the node list (grown by reallocation, every
//! node copied each time) about a tenth of the per-op overhead benchmark's instructions. Handed
//! back empty here instead, the next step's container of the same type starts with the
//! capacity it needed last time.
//!
//! Bounds: at most [`MAX_SPARES`] containers per thread and as many of one type as its caller
//! allows (one node list, which can be large; maps up to the total), each no larger than the
//! bound its caller gives ([`MAP_CAPACITY`] for maps); a larger one is freed, so a one-off huge
//! model does not pin its memory.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;

/// Most containers one thread keeps (four types per element type are in use).
const MAX_SPARES: usize = 12;

/// Largest map capacity kept, in entries.
pub(crate) const MAP_CAPACITY: usize = 1 << 14;

thread_local! {
    static SPARES: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A container kept here: it can be emptied and says how much it holds room for.
pub(crate) trait Spare: Default + 'static {
    /// Room, in elements.
    fn room(&self) -> usize;
    /// Drops the contents, keeping the room.
    fn empty(&mut self);
}

impl<K: 'static, V: 'static, S: Default + 'static> Spare for HashMap<K, V, S> {
    fn room(&self) -> usize {
        self.capacity()
    }
    fn empty(&mut self) {
        self.clear();
    }
}

impl<T: 'static> Spare for Vec<T> {
    fn room(&self) -> usize {
        self.capacity()
    }
    fn empty(&mut self) {
        self.clear();
    }
}

/// An empty container of this type: a spare one if the thread has one, else a new one.
pub(crate) fn take<C: Spare>() -> C {
    SPARES
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let i = s.iter().position(|b| b.is::<C>())?;
            s.swap_remove(i).downcast().ok().map(|b| *b)
        })
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Empties `c` and keeps it for [`take`], unless it has room for more than `max_room`
/// elements or the thread keeps enough spares already (then it is freed). At most `per_type`
/// spares of its type are kept; past that it replaces the least roomy one if it has more room.
pub(crate) fn put<C: Spare>(mut c: C, max_room: usize, per_type: usize) {
    if c.room() == 0 || c.room() > max_room {
        return;
    }
    c.empty();
    let _ = SPARES.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            let kept = s.iter().filter(|b| b.is::<C>()).count();
            if kept < per_type && s.len() < MAX_SPARES {
                s.push(Box::new(c));
            } else if let Some(least) = s
                .iter_mut()
                .filter_map(|b| b.downcast_mut::<C>())
                .min_by_key(|k| k.room())
            {
                if least.room() < c.room() {
                    *least = c;
                }
            }
        }
    });
}

/// A map that goes back to the thread's spares when dropped ([`put`]) and starts as a spare
/// ([`take`]): a field of this type recycles its map without a `Drop` on the struct
/// that holds it (which would make a borrowing struct, like a sweep's `Gradients`, live until
/// the end of its enclosing block in the borrow checker's eyes, breaking
/// `ctx.param_grads(&loss.backward())` as a block's last expression).
pub(crate) struct Recycled<K: 'static, V: 'static, S: Default + 'static>(HashMap<K, V, S>);

impl<K: 'static, V: 'static, S: Default + 'static> Default for Recycled<K, V, S> {
    fn default() -> Self {
        Recycled(take())
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
        put(std::mem::take(&mut self.0), MAP_CAPACITY, MAX_SPARES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::FastIdMap;

    #[test]
    fn a_returned_map_comes_back_empty_with_its_capacity() {
        let mut m: FastIdMap<usize, String> = take();
        m.extend((0..100).map(|i| (i, i.to_string())));
        let cap = m.capacity();
        put(m, MAP_CAPACITY, MAX_SPARES);
        let m: FastIdMap<usize, String> = take();
        assert!(m.is_empty());
        assert_eq!(m.capacity(), cap);
        // Another type is not handed this one.
        let other: FastIdMap<usize, u8> = take();
        assert_eq!(other.capacity(), 0);
        let v: Vec<String> = take();
        assert_eq!(v.capacity(), 0);
    }

    #[test]
    fn spares_are_bounded_in_number_and_size() {
        let mut huge: FastIdMap<usize, u8> = FastIdMap::default();
        huge.reserve(MAP_CAPACITY + 1);
        put(huge, MAP_CAPACITY, MAX_SPARES);
        let back: FastIdMap<usize, u8> = take();
        assert_eq!(back.capacity(), 0, "a map over the size bound is not kept");
        put(Vec::<u8>::with_capacity(100), 10, 1);
        assert_eq!(
            take::<Vec<u8>>().capacity(),
            0,
            "a list over its bound is not kept"
        );
        put(vec![1u8, 2, 3], 10, 1);
        let list: Vec<u8> = take();
        assert!(
            list.is_empty() && list.capacity() >= 3,
            "a list is kept, emptied"
        );
        // With one allowed per type, the roomiest is kept.
        put(Vec::<u16>::with_capacity(4), 100, 1);
        put(Vec::<u16>::with_capacity(50), 100, 1);
        put(Vec::<u16>::with_capacity(8), 100, 1);
        let count = SPARES.with(|s| s.borrow().iter().filter(|b| b.is::<Vec<u16>>()).count());
        assert_eq!(count, 1, "one list kept");
        assert_eq!(take::<Vec<u16>>().capacity(), 50);
        for _ in 0..3 * MAX_SPARES {
            let mut m: FastIdMap<u32, u32> = FastIdMap::default();
            m.insert(1, 1);
            put(m, MAP_CAPACITY, MAX_SPARES);
        }
        let kept = SPARES.with(|s| s.borrow().len());
        assert!(kept <= MAX_SPARES, "{kept} spares kept");
    }
}
