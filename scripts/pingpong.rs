//! Round-trip time of one cache line bounced between two threads pinned to two CPUs, in
//! nanoseconds: `pingpong [CPU_A CPU_B]` (default 0 1). Built and run by `corun.py` (plain
//! `rustc -O`, no crate), which uses it to tell two cores sharing a cache (about 60 ns on the
//! AMD Zen 4 guest) from two cores on different dies (about 320 ns there), where every line one
//! thread writes and the other reads crosses between them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

extern "C" {
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
}

/// Pins the calling thread to `cpu` (Linux; `pid` 0 is the calling thread).
fn pin(cpu: usize) {
    let mut mask = [0u64; 16];
    mask[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: the mask is a valid cpu_set_t of its size, read only during the call.
    let rc = unsafe { sched_setaffinity(0, std::mem::size_of_val(&mask), mask.as_ptr()) };
    assert_eq!(rc, 0, "sched_setaffinity to CPU {cpu} failed");
}

/// The bounced line, alone in its 128 bytes so that nothing else shares it.
#[repr(align(128))]
struct Line(AtomicU64);

fn main() {
    let cpus: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("CPU numbers"))
        .collect();
    let (a, b) = match cpus[..] {
        [a, b] => (a, b),
        _ => (0, 1),
    };
    let rounds: u64 = 200_000;
    let line = Line(AtomicU64::new(0));
    let ns = std::thread::scope(|s| {
        s.spawn(|| {
            pin(b);
            for i in 0..rounds {
                while line.0.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.0.store(2 * i + 2, Ordering::Release);
            }
        });
        pin(a);
        let t = Instant::now();
        for i in 0..rounds {
            line.0.store(2 * i + 1, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
        t.elapsed().as_secs_f64() / rounds as f64 * 1e9
    });
    println!("{ns:.0}");
}
