//! A small team of helper threads that share one large kernel with the calling thread.
//!
//! Why not rayon's pool (what `gemm` uses for its own threading): a training step runs one
//! large product at a time, between single-threaded elementwise ops, from a thread that is not
//! a rayon worker. Each parallel product then hands its work to the pool and puts the caller to
//! sleep, and the pool's `threads` workers plus the caller compete for `threads` cores. On the
//! 2-core benchmark machine that made mid_relu *slower* at 2 threads than at 1 (6.0 vs 5.1 ms,
//! 154k context switches per run). Here the calling thread works too, next to `threads − 1`
//! helpers, and one hand-off per kernel replaces gemm's several per product.
//!
//! A kernel is cut into pieces that the threads claim from a shared counter, so a helper that is
//! slow to start (its core busy with another process) simply does fewer pieces: the caller never
//! waits for a piece nobody has begun, and it takes back a helper's invitation that was not
//! picked up. The caller claims from the front and helpers from the back ([`Claims`]), so on two
//! threads each keeps the same rows from one kernel to the next and finds its share of an
//! activation in its own core's cache. Helpers spin for [`SPIN`] after a job, because the next
//! large kernel of a training step usually follows within tens of microseconds, then park and
//! cost nothing. A thread that finds the team in use by another thread runs every piece itself:
//! there is no queue, and so no deadlock.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, TryLockError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long an idle helper polls for the next job before it parks.
const SPIN: Duration = Duration::from_micros(200);

/// Slot states. IDLE → READY (caller posts a job) → RUNNING (helper takes it) → DONE (helper
/// finished) → IDLE (caller collects it); or READY → IDLE when the caller takes the job back
/// before the helper started it.
const IDLE: u8 = 0;
const READY: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;

/// What a helper works on: the caller's closure and piece counter, lifetimes erased.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    claims: *const Claims,
}

/// One helper thread's mailbox.
struct Slot {
    state: AtomicU8,
    job: UnsafeCell<Option<Job>>,
    /// Whether a piece panicked on this helper during its last job.
    panicked: AtomicBool,
    /// The FTZ/DAZ setting the helper runs its next job with (the caller's).
    flush_denormal: AtomicBool,
}

// SAFETY: `job` is written only by the caller holding the team lock while the state is IDLE
// (the helper is not reading it), and read only by the helper after it moved the state from
// READY to RUNNING with Acquire ordering, which the caller's Release store of READY pairs with.
unsafe impl Sync for Slot {}

struct Helper {
    slot: &'static Slot,
    thread: Thread,
}

/// The helpers, created on first use and grown (never shrunk) when more threads are asked for.
static TEAM: OnceLock<Mutex<Vec<Helper>>> = OnceLock::new();

/// How many helpers are awake: running a job or spinning for the next, not parked. Only a hint
/// ([`for_chunks`] asks it whether a mid-sized pass is worth handing out), so relaxed loads.
static AWAKE_HELPERS: AtomicUsize = AtomicUsize::new(0);

/// Whether some helper is awake (see [`AWAKE_HELPERS`]): work handed out now starts at once.
fn helper_awake() -> bool {
    AWAKE_HELPERS.load(Ordering::Relaxed) > 0
}

fn spawn_helper() -> Helper {
    let slot: &'static Slot = Box::leak(Box::new(Slot {
        state: AtomicU8::new(IDLE),
        job: UnsafeCell::new(None),
        panicked: AtomicBool::new(false),
        flush_denormal: AtomicBool::new(false),
    }));
    let handle = thread::Builder::new()
        .name("vgrad-helper".into())
        .spawn(move || helper_loop(slot))
        .expect("vgrad: cannot spawn a helper thread");
    Helper {
        slot,
        thread: handle.thread().clone(),
    }
}

/// A caught panic's payload.
type Payload = Box<dyn Any + Send>;

/// The pieces of one [`run`] not yet claimed, `front..back`, in one word: the caller claims
/// from the front, helpers from the back. So on two threads the caller computes the first rows
/// of every product and pass and the helper the last, one kernel after another, and each
/// thread's share of an activation is still in its own core's cache when the next kernel reads
/// it; a thread that finishes early goes on into the other's end, as with one shared counter.
/// Against one counter from the front (README loop, 2 threads, AMD Zen 4 guest, pairs
/// alternated, split by a cache line's round trip between the two CPUs): with the vCPUs on
/// one die (60–70 ns) level (0.995–1.002; a 20-wide 60-deep stack at batch 2500 −4%); on
/// different dies (320–340 ns, where every line read by the other thread crosses between them)
/// grid.json's 256-wide GELU stack −6.5%, mid_relu −5.7%, a 240-wide stack at batch 360 −4.8%,
/// resbn −2.3%, the 20-wide stack −15%, wide_relu level.
struct Claims(AtomicU64);

impl Claims {
    fn new(pieces: usize) -> Self {
        assert!(
            pieces < 1 << 32,
            "vgrad: {pieces} pieces for one parallel run"
        );
        Claims(AtomicU64::new((pieces as u64) << 32))
    }

    /// The next piece from the front (`back == false`) or the back, if any is left.
    fn take(&self, back: bool) -> Option<usize> {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (front, end) = (cur & 0xffff_ffff, cur >> 32);
            if front >= end {
                return None;
            }
            let (next, piece) = if back {
                ((end - 1) << 32 | front, end - 1)
            } else {
                (end << 32 | (front + 1), front)
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(piece as usize),
                Err(now) => cur = now,
            }
        }
    }

    /// Hands out nothing more.
    fn close(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Claims pieces (from the back of `claims` on a helper, the front on the caller) and runs them
/// until none are left; returns the first panic's payload, if any (the other pieces still run).
fn work(f: &(dyn Fn(usize) + Sync), claims: &Claims, back: bool) -> Option<Payload> {
    let mut first = None;
    while let Some(i) = claims.take(back) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
            first.get_or_insert(p);
        }
    }
    first
}

/// [`run`] on the calling thread alone, with the same contract: a panicking piece does not stop
/// the others, and the first panic resumes once all have run. (Stopping at the first panic
/// instead made the outcome depend on whether another thread held the helpers at that moment:
/// a test saw 0 of 5 other pieces finish when the team was busy.)
fn serially(pieces: usize, f: &(dyn Fn(usize) + Sync)) {
    let mut first = None;
    for i in 0..pieces {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
            first.get_or_insert(p);
        }
    }
    if let Some(p) = first {
        resume_unwind(p);
    }
}

fn helper_loop(slot: &'static Slot) {
    let mut flush = false;
    let mut awake = true;
    AWAKE_HELPERS.fetch_add(1, Ordering::Relaxed);
    loop {
        // Wait for a job: spin for SPIN, then park (an unpark that arrived earlier makes park
        // return at once, and every wake-up re-checks the state, so no job is missed).
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            if slot.state.load(Ordering::Relaxed) == READY
                && slot
                    .state
                    .compare_exchange(READY, RUNNING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            polls = polls.wrapping_add(1);
            if !polls.is_multiple_of(64) || start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                if awake {
                    AWAKE_HELPERS.fetch_sub(1, Ordering::Relaxed);
                    awake = false;
                }
                thread::park();
            }
        }
        if !awake {
            AWAKE_HELPERS.fetch_add(1, Ordering::Relaxed);
            awake = true;
        }
        let want = slot.flush_denormal.load(Ordering::Relaxed);
        if want != flush {
            super::simd::set_flush_denormal_this_thread(want);
            flush = want;
        }
        // SAFETY: the job was written before READY was stored (Release) and this thread moved
        // READY to RUNNING (Acquire); the caller waits for DONE before its closure and counter
        // go out of scope.
        let job = unsafe { (*slot.job.get()).expect("a posted slot has a job") };
        let (f, claims) = unsafe { (&*job.f, &*job.claims) };
        let panicked = work(f, claims, true).is_some();
        slot.panicked.store(panicked, Ordering::Relaxed);
        slot.state.store(DONE, Ordering::Release);
    }
}

/// 0 means "not set yet": resolved lazily to the machine's available parallelism.
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads large matrix products (and large plain SGD updates) may use, at least 1.
/// The calling thread is one of them: with `n` threads, `n − 1` helper threads are started on
/// first use and share each large product with it (see DESIGN.md, "Threads"). Products under 2¹⁹
/// multiply-adds always run on the calling thread alone.
///
/// # Example
/// ```
/// vgrad::tensor::set_num_threads(1); // everything on the calling thread
/// assert_eq!(vgrad::tensor::num_threads(), 1);
/// ```
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The number of threads large matrix products may use. Defaults to the machine's available
/// parallelism; change it with [`set_num_threads`].
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            NUM_THREADS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Runs `f(0)`, …, `f(pieces − 1)` on the calling thread and up to `threads − 1` helper threads,
/// each piece once (the caller's from the front, the helpers' from the back, see [`Claims`]);
/// returns when all have finished.
///
/// # Panics
/// If a piece panics: once every other piece has finished, a panic on the calling thread resumes,
/// or one on a helper is reported as a new panic.
pub(crate) fn run(pieces: usize, threads: usize, f: &(dyn Fn(usize) + Sync)) {
    let helpers_wanted = threads.min(pieces).saturating_sub(1);
    if helpers_wanted == 0 {
        return serially(pieces, f);
    }
    let mut team = match TEAM.get_or_init(|| Mutex::new(Vec::new())).try_lock() {
        Ok(t) => t,
        // Pieces' panics are caught, so only a failed helper spawn can poison the lock, and
        // that happens before any job is posted: every slot is still IDLE, the team is sound.
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return serially(pieces, f),
    };
    while team.len() < helpers_wanted {
        team.push(spawn_helper());
    }
    let claims = Claims::new(pieces);
    let flush = super::simd::flush_denormal_this_thread();
    // SAFETY (lifetime erasure): `f` and `claims` outlive every helper's use of them, because
    // `Collect` blocks, also while unwinding, until each posted job is taken back or DONE.
    let job = Job {
        f: unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), _>(f) },
        claims: &claims,
    };
    let helpers = &team[..helpers_wanted];
    for h in helpers {
        // SAFETY: the slot is IDLE, so its helper is not reading the job.
        unsafe { *h.slot.job.get() = Some(job) };
        h.slot.flush_denormal.store(flush, Ordering::Relaxed);
        h.slot.state.store(READY, Ordering::Release);
        h.thread.unpark();
    }
    let collect = Collect {
        helpers,
        claims: &claims,
    };
    let mine = work(f, &claims, false);
    let helper_panicked = collect.finish();
    drop(team);
    if let Some(p) = mine {
        resume_unwind(p);
    }
    assert!(
        !helper_panicked,
        "vgrad: a kernel piece panicked on a helper thread"
    );
}

/// Below this many elements an elementwise pass runs on one thread. In a training step on
/// several threads the helpers are usually still spinning from the last product (see
/// [`SPIN`]), so a hand-off costs well under a microsecond, and a pass of 2¹⁴ elements (64 KiB
/// of f32, a 128 × 128 activation) is worth splitting; a pass left to the caller is time the
/// spinning helper sits idle on the step's critical path. From 2¹⁸ (the old bound, now
/// [`PARALLEL_MIN_ELEMS_PARKED`]) to 2¹⁴, README loop, 2 threads, AMD Zen 4, alternated, 6
/// rounds: mid_relu −6 to −8%, grid.json's 256-wide stacks −7 to −9%, 128-wide 50-deep sigmoid
/// −10%, 192-wide tanh 24 deep −11 to −16%, 72-wide at batch 1500 −10 to −17%; 52 hold-outs
/// with activations of 2¹⁴–2¹⁸ elements a median −2% (3 rounds; every loss past 5% level or a
/// gain at 6). Halving the bound again (2¹³) gained nothing measurable. One thread never
/// splits.
pub(crate) const PARALLEL_MIN_ELEMS: usize = 1 << 14;

/// Below this many elements a pass is not handed to helpers that are all parked: waking one
/// costs a few microseconds, about what one core needs for 2¹⁸ simple element updates. Where
/// no product reaches two threads the helpers stay parked, and splitting from
/// [`PARALLEL_MIN_ELEMS`] regardless cost a 16-wide stack at batch 2048 (2¹⁵-element
/// activations, 2¹⁹-multiply-add products) 7% and a 48-wide one at batch 400 3%.
pub(crate) const PARALLEL_MIN_ELEMS_PARKED: usize = 1 << 18;

/// A raw pointer shared by the pieces of one parallel kernel.
///
/// Whoever builds one promises that the pieces only read through it, or write disjoint parts of
/// what it points to, and that the memory outlives the [`run`] that uses it.
pub(crate) struct SharedPtr<T>(pub(crate) *mut T);
// Not derived: the derive would require `T: Copy`.
impl<T> Clone for SharedPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedPtr<T> {}
// SAFETY: see the type's contract, which every construction site upholds.
unsafe impl<T> Sync for SharedPtr<T> {}
unsafe impl<T> Send for SharedPtr<T> {}

impl<T> SharedPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the field).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Calls `f(start, chunk)` on disjoint consecutive chunks covering `out` (`start` is the chunk's
/// offset), spread over up to [`num_threads`](super::num_threads) threads when `out` has at least
/// [`PARALLEL_MIN_ELEMS`] elements and a helper is awake, or at least
/// [`PARALLEL_MIN_ELEMS_PARKED`], else once on the calling thread.
pub(crate) fn for_chunks<T: Send>(out: &mut [T], f: &(dyn Fn(usize, &mut [T]) + Sync)) {
    let n = out.len();
    let threads = super::num_threads();
    if threads <= 1 || n < PARALLEL_MIN_ELEMS || (n < PARALLEL_MIN_ELEMS_PARKED && !helper_awake())
    {
        return f(0, out);
    }
    // Two chunks per thread, as for products: a thread that starts late does fewer. A multiple
    // of 128 elements, so that `map_par_easy`'s blocks (512 bytes) fall where they would on
    // one thread.
    let chunk = n.div_ceil(2 * threads).next_multiple_of(128);
    let pieces = n.div_ceil(chunk);
    // Each piece index is claimed exactly once (see `run`), so the chunks handed out are
    // disjoint, and `out` stays borrowed until `run` returns.
    let base = SharedPtr(out.as_mut_ptr());
    run(pieces, threads, &|i| {
        let start = i * chunk;
        let len = chunk.min(n - start);
        // SAFETY: the chunks are disjoint (above) and start + len ≤ n.
        let part = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), len) };
        f(start, part);
    });
}

/// How many blocks of whole rows a row-wise kernel over `rows` rows of `row_len` elements
/// (softmax, layer norm) is cut into: one, run on the calling thread, where [`for_chunks`] would
/// not split a pass of that size; else two per thread, as for products, and never more than
/// there are rows. Callers that keep per-block partial sums size them by this.
pub(crate) fn row_blocks(rows: usize, row_len: usize) -> usize {
    let n = rows.saturating_mul(row_len);
    let threads = super::num_threads();
    if threads <= 1 || n < PARALLEL_MIN_ELEMS || (n < PARALLEL_MIN_ELEMS_PARKED && !helper_awake())
    {
        return 1;
    }
    (2 * threads).min(rows).max(1)
}

/// Calls `f(block, rows)` for `blocks` consecutive, disjoint ranges of rows covering
/// `0..rows` (as even as they divide), on up to [`num_threads`](super::num_threads) threads;
/// with one block, directly on the calling thread. `blocks` comes from [`row_blocks`].
pub(crate) fn for_row_blocks(
    rows: usize,
    blocks: usize,
    f: &(dyn Fn(usize, std::ops::Range<usize>) + Sync),
) {
    if blocks <= 1 {
        return f(0, 0..rows);
    }
    let per = rows.div_ceil(blocks);
    run(blocks, super::num_threads(), &|b| {
        let start = (b * per).min(rows);
        f(b, start..(start + per).min(rows));
    });
}

/// Takes back or waits for every posted job, on drop too, so the caller cannot return or
/// unwind while a helper still uses its closure.
struct Collect<'a> {
    helpers: &'a [Helper],
    claims: &'a Claims,
}

impl Collect<'_> {
    fn collect(&self) -> bool {
        let mut panicked = false;
        for h in self.helpers {
            let s = &h.slot.state;
            // Not started yet: take the job back; the helper's READY → RUNNING step now fails.
            if s.compare_exchange(READY, IDLE, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                continue;
            }
            let mut polls = 0u32;
            while s.load(Ordering::Acquire) != DONE {
                polls = polls.wrapping_add(1);
                if polls < 1 << 16 {
                    std::hint::spin_loop();
                } else {
                    thread::yield_now();
                }
            }
            panicked |= h.slot.panicked.load(Ordering::Relaxed);
            s.store(IDLE, Ordering::Relaxed);
        }
        panicked
    }

    /// Collects every job, and returns whether a helper's piece panicked.
    fn finish(self) -> bool {
        let panicked = self.collect();
        std::mem::forget(self);
        panicked
    }
}

impl Drop for Collect<'_> {
    fn drop(&mut self) {
        // Only reached while unwinding: stop handing out pieces, then wait.
        self.claims.close();
        self.collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// The front and the back meet without handing a piece out twice or skipping one, in any
    /// interleaving; the front goes up from 0, the back down from the last; `close` ends both.
    #[test]
    fn claims_from_both_ends_cover_each_piece_once() {
        for pieces in 0..7 {
            for pattern in 0u32..1 << pieces {
                let claims = Claims::new(pieces);
                let mut seen = vec![0; pieces];
                let (mut front, mut back) = (0, pieces);
                for step in 0..pieces {
                    let from_back = pattern >> step & 1 == 1;
                    let i = claims.take(from_back).expect("a piece is left");
                    if from_back {
                        back -= 1;
                        assert_eq!(i, back);
                    } else {
                        assert_eq!(i, front);
                        front += 1;
                    }
                    seen[i] += 1;
                }
                assert!(
                    seen.iter().all(|&n| n == 1),
                    "{pieces} pieces, pattern {pattern:b}"
                );
                assert_eq!((claims.take(false), claims.take(true)), (None, None));
            }
        }
        let claims = Claims::new(5);
        assert_eq!(claims.take(false), Some(0));
        claims.close();
        assert_eq!((claims.take(false), claims.take(true)), (None, None));
    }

    #[test]
    fn every_part_runs_once() {
        for parts in 0..5 {
            let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            run(parts, parts, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn pieces_run_on_the_helpers_too() {
        // Other tests may hold the team for a moment (then every piece runs here), and the
        // helper may be slow to wake; retry until a piece lands on it.
        let me = thread::current().id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut elsewhere = false;
        while !elsewhere && Instant::now() < deadline {
            let ids = Mutex::new(Vec::new());
            run(4, 2, &|_| {
                ids.lock().unwrap().push(thread::current().id());
                thread::sleep(Duration::from_millis(2));
            });
            let ids = ids.into_inner().unwrap();
            assert_eq!(ids.len(), 4);
            elsewhere = ids.iter().any(|&id| id != me);
        }
        assert!(elsewhere, "no piece ever ran on a helper thread");
    }

    #[test]
    fn a_panicking_piece_lets_the_others_finish_first() {
        let finished = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            run(6, 2, &|i| {
                if i == 0 {
                    panic!("piece 0 fails");
                }
                thread::sleep(Duration::from_millis(2));
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(r.is_err());
        assert_eq!(finished.load(Ordering::Relaxed), 5);
        // The same on the calling thread alone (one thread, or the helpers busy elsewhere).
        let finished = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            run(6, 1, &|i| {
                if i == 0 {
                    panic!("piece 0 fails");
                }
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(r.is_err());
        assert_eq!(finished.load(Ordering::Relaxed), 5);
        let hits = AtomicUsize::new(0);
        run(2, 2, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn helper_panic_reaches_the_caller_and_the_team_still_works() {
        let r = catch_unwind(|| {
            run(2, 2, &|i| {
                if i == 1 {
                    panic!("part 1 fails");
                }
            })
        });
        assert!(r.is_err());
        let hits = AtomicUsize::new(0);
        run(3, 3, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn chunks_cover_the_slice_once() {
        // Below, between and past both bounds: serial, split only while a helper is awake
        // (the `run` just before wakes one, which may or may not still spin), always split.
        run(2, 2, &|_| {});
        for n in [
            0,
            5,
            PARALLEL_MIN_ELEMS - 1,
            PARALLEL_MIN_ELEMS + 77,
            PARALLEL_MIN_ELEMS_PARKED + 77,
        ] {
            let mut v = vec![0u32; n];
            for_chunks(&mut v, &|start, part| {
                for (i, x) in part.iter_mut().enumerate() {
                    *x += (start + i) as u32 + 1;
                }
            });
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32 + 1));
        }
    }

    #[test]
    fn concurrent_callers_all_finish() {
        let total = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        run(2, 2, &|_| {
                            total.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 800);
    }
}
