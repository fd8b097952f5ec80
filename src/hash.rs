//! The crate's one hasher, shared by the engine (node indices), `nn` (parameter ids) and the
//! monitor (module paths). It sits below all three so none of them imports it from another.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The crate's one hasher, for maps keyed by small integer ids (node indices,
/// [`ParamId`](crate::nn::ParamId)s) or by short labels from the program's own module tree
/// (`"12"`, `"3.branch.0"`). An integer is hashed with one multiplication (Fibonacci hashing), a
/// string a byte at a time. A backward sweep with hooks looks every node up in the label and hook
/// maps, and the gradient monitor looks labels up a hundred times per watched step: in both
/// profiles the standard library's SipHash showed, a defence against adversarial keys that ids
/// and module paths do not need.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

/// Builds [`IdHasher`]s: the hasher parameter of [`FastIdMap`], for code that names the map
/// type whole (`spare::Recycled`).
pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;

/// A `HashMap` hashed with [`IdHasher`]: the per-step maps of gradients and bound parameters
/// showed SipHash at 1% of a deep training step.
pub(crate) type FastIdMap<K, V> = HashMap<K, V, IdBuild>;

/// A `HashSet` hashed with [`IdHasher`].
pub(crate) type FastIdSet<K> = HashSet<K, IdBuild>;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
