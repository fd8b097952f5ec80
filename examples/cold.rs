use std::time::Instant;
use vgrad::{Element, Tensor};

fn run<T: Element>(m: usize, k: usize, n: usize, ta: bool, tb: bool) -> f64 {
    let mk = |s: u64, r: usize, c: usize| {
        let mut x = s;
        let v: Vec<T> = (0..r * c)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                T::from((x >> 40) as f64 / (1u64 << 24) as f64 - 0.5).unwrap()
            })
            .collect();
        Tensor::from_vec(v, &[r, c]).unwrap()
    };
    let a = if ta { mk(1, k, m) } else { mk(1, m, k) };
    let b = if tb { mk(2, n, k) } else { mk(2, k, n) };
    let mut times = vec![];
    let reps = (2e9 / (m * n * k) as f64).clamp(20.0, 2000.0) as usize;
    for _ in 0..reps {
        let t = Instant::now();
        let c = a.matmul_t(&b, ta, tb);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(c);
    }
    times.sort_by(|x, y| x.partial_cmp(y).unwrap());
    times[times.len() / 2]
}

fn main() {
    vgrad::set_num_threads(std::env::var("T").map(|v| v.parse().unwrap()).unwrap_or(1));
    let shapes: Vec<usize> = std::env::var("S")
        .unwrap_or("128,256,256".into())
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let (m, k, n) = (shapes[0], shapes[1], shapes[2]);
    let (ta, tb) = (std::env::var("TA").is_ok(), std::env::var("TB").is_ok());
    let a = run::<f32>(m, k, n, ta, tb);
    let b = run::<f64>(m, k, n, ta, tb);
    println!("{m}x{k}x{n} ta {ta} tb {tb}: f32 {a:.1} us f64 {b:.1} us");
}
