//! # Learning rates: too small, just right, too large, diverging — and what curvature predicts
//!
//! The companion to vanishing gradients: even when every layer's gradient is healthy, the step
//! taken along it can be wrong by orders of magnitude. One network (a 64→64→64→10 ReLU MLP on
//! the bundled 8×8 digits) is trained from the same initial weights with plain full-batch
//! gradient descent at a sweep of learning rates, and once more with linear warm-up followed
//! by cosine decay. You will learn:
//!
//! * what the four regimes look like: a rate too small crawls; a good one falls fast and
//!   smoothly; a large one makes the loss jump up before it recovers, or never recovers; a
//!   larger one sends it to infinity and NaN within a few steps;
//! * how to measure the **sharpness** of the loss, λ_max, the top eigenvalue of its Hessian,
//!   with Hessian-vector products and power iteration ([`vgrad::curvature`]), and why 2/λ_max
//!   is the classical limit: on a quadratic, gradient descent is stable exactly below it;
//! * why the rate at which real training breaks differs from 2/λ_max at initialisation: the
//!   curvature moves. It grows in the first steps ("progressive sharpening"), and at rates past
//!   the limit the loss spikes and lands in a flatter region where 2/λ_max is above the rate
//!   (the "edge of stability"; Cohen et al., *Gradient Descent on Neural Networks Typically
//!   Occurs at the Edge of Stability*, ICLR 2021). The example tracks λ_max during training to
//!   show it;
//! * why warm-up helps: starting small lets the network reach a flatter region before the rate
//!   is large, so a peak rate that fails when used from the first step can train.
//!
//! Run it (about half a minute on two cores):
//!
//! ```text
//! cargo run --release --example learning_rate              # writes out/learning_rate/
//! cargo run --release --example learning_rate -- --out DIR
//! cargo run --example learning_rate -- --quick             # a smoke run of a few seconds
//! cargo run --example learning_rate -- --help
//! ```
//!
//! It prints the power iteration's convergence, a results table and the comparison of 2/λ_max
//! with the sweep, and writes to the output folder:
//!
//! * `loss_curves.csv`: the training loss at every step, one column per run;
//! * `sharpness.csv`: λ_max measured during training, with the rate in force and 2/rate;
//! * `power_iteration.csv`: the power iteration's estimate after each Hessian-vector product;
//! * `results.csv`: the results table;
//! * `learning_rate.svg`: the loss curves (log scale) above the sharpness curves.

#[path = "common/mod.rs"]
pub mod common;

use common::{Command, Stop};
use plotters::prelude::*;
use rand::{rngs::StdRng, SeedableRng};
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vgrad::curvature::{top_hessian_eigenvalue, PowerIterationConfig, TopEigen};
use vgrad::data::{self, Dataset};
use vgrad::nn::{cross_entropy, Activation, Ctx, Linear, Module, Optimizer, Reduction};
use vgrad::nn::{CosineAnnealingLr, LinearWarmup, LrSchedule, Sequential, SequentialLr};
use vgrad::nn::{Sgd, SgdConfig};
use vgrad::{Tape, Var};

/// f32, as networks are usually trained; the curvature estimates need no more precision.
type F = f32;

/// Every run starts from the weights this seed gives, so the runs differ only in their rate.
const MODEL_SEED: u64 = 0;

/// The command line: the shared flags only.
pub const COMMAND: Command = Command {
    name: "learning_rate",
    about: "learning rates too small, right, too large and diverging; what curvature predicts",
    quick: "a smoke run: 256 digits, 30 steps, three rates, short power iterations",
    writes: Some("the CSV files and the plot"),
    extra: &[],
};

/// What to run and where to write.
#[derive(Clone, Debug)]
pub struct Options {
    /// A smoke run: 256 samples, a few steps, three rates, short power iterations.
    pub quick: bool,
    /// The folder for the CSV files and the plot (created if missing).
    pub out: PathBuf,
}

impl Options {
    /// Parses [`COMMAND`]'s arguments (those after the program's name).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Options, Stop> {
        let args = COMMAND.parse(args)?;
        Ok(Options {
            quick: args.quick,
            out: args.out,
        })
    }
}

/// The sizes of the experiment; `--quick` shrinks every one of them.
struct Plan {
    /// Training samples used (the first `n` of the digits training split).
    samples: usize,
    steps: usize,
    /// The constant rates of the sweep, increasing.
    rates: Vec<f64>,
    /// Power iteration for λ_max at initialisation: run to a tight tolerance.
    init_power: PowerIterationConfig,
    /// Power iteration while training: looser, since it runs many times.
    track_power: PowerIterationConfig,
    /// λ_max is measured every `track_every` steps up to `track_until`, and at the end.
    track_every: usize,
    track_until: usize,
    warmup_steps: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        let power = |max_iters, rel_tol| PowerIterationConfig {
            max_iters,
            rel_tol,
            seed: 0,
        };
        if quick {
            Plan {
                samples: 256,
                steps: 30,
                rates: vec![0.1, 1.0, 64.0],
                init_power: power(10, 1e-4),
                track_power: power(4, 1e-2),
                track_every: 10,
                track_until: 20,
                warmup_steps: 10,
            }
        } else {
            Plan {
                samples: usize::MAX,
                steps: 500,
                rates: vec![0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 3.0, 4.0, 8.0],
                init_power: power(100, 1e-6),
                track_power: power(20, 1e-3),
                track_every: 2,
                track_until: 50,
                warmup_steps: 100,
            }
        }
    }
}

/// How a run went, judged from its loss curve alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The loss fell without ever jumping up, but is still above half its starting value.
    Crawls,
    /// The loss fell below half its start and never jumped up.
    Smooth,
    /// The loss jumped up (to more than twice its lowest value so far) and then recovered.
    Spikes,
    /// The loss jumped up and did not recover: training failed with a finite loss. A ReLU
    /// network that blew up often comes back with every hidden unit dead, its loss stuck at
    /// the entropy of the labels (ln 10 ≈ 2.303 here).
    Fails,
    /// The loss reached infinity or NaN.
    Diverges,
}

impl Verdict {
    fn judge(losses: &[f64]) -> Verdict {
        if losses.iter().any(|l| !l.is_finite()) {
            return Verdict::Diverges;
        }
        let mut lowest = f64::INFINITY;
        let mut jumped = false;
        for &l in losses {
            jumped |= l > 2.0 * lowest;
            lowest = lowest.min(l);
        }
        let recovered = losses[losses.len() - 1] < 0.5 * losses[0];
        match (jumped, recovered) {
            (false, false) => Verdict::Crawls,
            (false, true) => Verdict::Smooth,
            (true, true) => Verdict::Spikes,
            (true, false) => Verdict::Fails,
        }
    }

    /// A failed run: unstable, whether or not the loss became NaN.
    pub fn failed(self) -> bool {
        matches!(self, Verdict::Fails | Verdict::Diverges)
    }

    fn describe(self) -> &'static str {
        match self {
            Verdict::Crawls => "crawls (too small)",
            Verdict::Smooth => "smooth",
            Verdict::Spikes => "spikes, recovers",
            Verdict::Fails => "blows up, fails",
            Verdict::Diverges => "diverges (inf/NaN)",
        }
    }
}

/// One training run.
#[derive(Clone, Debug)]
pub struct Run {
    /// `lr=0.3`, or `warmup+cosine, peak 3` for the scheduled run.
    pub name: String,
    /// The constant rate, or the scheduled run's peak.
    pub lr: f64,
    /// Whether the rate followed warm-up and cosine decay.
    pub scheduled: bool,
    /// The training loss before each step; it stops at the first non-finite value.
    pub losses: Vec<f64>,
    /// `(step, rate in force, λ_max)` measured during training.
    pub sharpness: Vec<(usize, f64, f64)>,
    /// Accuracy on the 360 held-out digits after training (NaN after divergence).
    pub test_accuracy: f64,
    /// How it went.
    pub verdict: Verdict,
    /// Wall-clock seconds, including the curvature measurements.
    pub seconds: f64,
}

impl Run {
    /// The loss before the last step taken.
    pub fn final_loss(&self) -> f64 {
        self.losses[self.losses.len() - 1]
    }
}

/// What [`run`] measured.
#[derive(Clone, Debug)]
pub struct Summary {
    /// λ_max of the loss at the initial weights.
    pub lambda_max: f64,
    /// The power iteration's estimate after each Hessian-vector product.
    pub power_history: Vec<f64>,
    /// The constant-rate runs in increasing rate, then the scheduled run.
    pub runs: Vec<Run>,
    /// The smallest constant rate whose run failed (finite or not), if any did.
    pub smallest_failing_lr: Option<f64>,
    /// The smallest constant rate whose loss became infinite or NaN, if any did.
    pub smallest_diverging_lr: Option<f64>,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// The command line: `--help` prints the usage, a bad argument gives exit code 2, a failed
/// run exit code 1.
pub fn cli(args: impl IntoIterator<Item = String>) -> u8 {
    common::finish(Options::from_args(args), |opts| run(&opts).map(|_| ()))
}

fn main() -> std::process::ExitCode {
    cli(std::env::args().skip(1)).into()
}

/// Runs the sweep, the scheduled run and the curvature estimates; prints the results and
/// writes the files.
pub fn run(opts: &Options) -> Result<Summary, Box<dyn Error>> {
    let started = Instant::now();
    let plan = Plan::new(opts.quick);
    std::fs::create_dir_all(&opts.out)?;
    let digits = data::digits::<F>()?;
    let n = plan.samples.min(digits.train.len());
    let (x, y) = digits.train.batch(&(0..n).collect::<Vec<_>>());
    let train = Dataset {
        x,
        y,
        ..digits.train
    };
    println!(
        "64→64→64→10 ReLU MLP, {n} training digits, full-batch gradient descent, {} steps per run",
        plan.steps
    );

    // ---- Curvature at initialisation ------------------------------------------------------
    // The gradient is recorded on the tape (backward_graph) and differentiated again against
    // a vector v, giving H·v without forming H; power iteration repeats v ← Hv/‖Hv‖.
    println!("\nλ_max at initialisation, by power iteration on Hessian-vector products:");
    let mut model = mlp()?;
    let top = {
        let tape = Tape::new();
        let (ctx, loss) = full_batch_loss(&mut model, &tape, &train);
        sharpness_of(&ctx, loss, &plan.init_power)?
    };
    print_convergence(&top);
    let lambda_max = top.eigenvalue;
    let limit = format!(
        "λ_max = {lambda_max:.4}, so 2/λ_max = {:.3}: the largest stable rate if the loss were \
         the quadratic it looks like here",
        2.0 / lambda_max
    );
    println!("  {}", common::indented(&limit, 4).trim_start());

    // ---- The sweep --------------------------------------------------------------------------
    println!("\nconstant learning rates:");
    let mut runs = Vec::new();
    for &lr in &plan.rates {
        runs.push(train_run(
            &plan,
            &train,
            &digits.test,
            lr,
            false,
            lambda_max,
        )?);
    }
    let smallest = |pred: fn(Verdict) -> bool| runs.iter().find(|r| pred(r.verdict)).map(|r| r.lr);
    let smallest_failing_lr = smallest(Verdict::failed);
    let smallest_diverging_lr = smallest(|v| v == Verdict::Diverges);

    // Warm-up then cosine decay, peaking at the smallest rate that failed at constant rate:
    // the question is whether easing into it lets the network survive it.
    let peak = smallest_failing_lr.unwrap_or(plan.rates[plan.rates.len() - 1]);
    println!(
        "\nlinear warm-up over {} steps, then cosine decay to 0:",
        plan.warmup_steps
    );
    runs.push(train_run(
        &plan,
        &train,
        &digits.test,
        peak,
        true,
        lambda_max,
    )?);

    // ---- Report -----------------------------------------------------------------------------
    let table = results_table(&runs);
    println!("\n{table}");
    print_interpretation(
        lambda_max,
        &runs,
        smallest_failing_lr,
        smallest_diverging_lr,
    );

    let out = &opts.out;
    let files = vec![
        write_file(&out.join("loss_curves.csv"), &loss_csv(&runs))?,
        write_file(&out.join("sharpness.csv"), &sharpness_csv(&runs))?,
        write_file(&out.join("power_iteration.csv"), &power_csv(&top))?,
        write_file(&out.join("results.csv"), &results_csv(&runs))?,
        plot(
            &out.join("learning_rate.svg"),
            &runs,
            lambda_max,
            plan.track_until,
        )?,
    ];
    println!("\n{}", common::wrote(&files, out));
    println!("total time {:.1} s", started.elapsed().as_secs_f64());

    Ok(Summary {
        lambda_max,
        power_history: top.history,
        runs,
        smallest_failing_lr,
        smallest_diverging_lr,
        files,
    })
}

/// The network, with PyTorch's default initialisation from [`MODEL_SEED`].
fn mlp() -> vgrad::Result<Sequential<F>> {
    let mut rng = StdRng::seed_from_u64(MODEL_SEED);
    Ok(Sequential::new()
        .push(Linear::new(64, 64, &mut rng)?)
        .push(Activation::Relu)
        .push(Linear::new(64, 64, &mut rng)?)
        .push(Activation::Relu)
        .push(Linear::new(64, 10, &mut rng)?))
}

/// The full-batch training loss on `tape`, and the context that bound the parameters.
fn full_batch_loss<'t>(
    model: &mut Sequential<F>,
    tape: &'t Tape<F>,
    data: &Dataset<F>,
) -> (Ctx<'t, F>, Var<'t, F>) {
    let mut ctx = Ctx::new(tape);
    let logits = model.forward(&mut ctx, tape.constant(data.x.clone()));
    let loss = cross_entropy(logits, &data.y, Reduction::Mean);
    (ctx, loss)
}

/// λ_max of `loss` with respect to every parameter the forward pass bound.
fn sharpness_of(
    ctx: &Ctx<'_, F>,
    loss: Var<'_, F>,
    cfg: &PowerIterationConfig,
) -> vgrad::Result<TopEigen<F>> {
    let params: Vec<_> = ctx.bound().into_iter().map(|(_, _, var)| var).collect();
    top_hessian_eigenvalue(loss, &params, cfg)
}

/// Trains a fresh copy of the network at constant rate `lr`, or with warm-up and cosine decay
/// peaking at `lr`, measuring λ_max along the way.
fn train_run(
    plan: &Plan,
    train: &Dataset<F>,
    test: &Dataset<F>,
    lr: f64,
    scheduled: bool,
    lambda_init: f64,
) -> Result<Run, Box<dyn Error>> {
    let started = Instant::now();
    let name = if scheduled {
        format!("warmup+cosine, peak {lr}")
    } else {
        format!("lr={lr}")
    };
    let mut model = mlp()?;
    let mut opt = Sgd::new(SgdConfig {
        lr,
        ..Default::default()
    })?;
    // Linear warm-up from 1% of the peak, then half a cosine down to 0. A schedule is a pure
    // function of the step, so it is queried directly and the rate set on the optimiser.
    let schedule = if scheduled {
        Some(SequentialLr::new(
            vec![
                Box::new(LinearWarmup::new(0.01, plan.warmup_steps)?),
                Box::new(CosineAnnealingLr::new(plan.steps - plan.warmup_steps, 0.0)?),
            ],
            vec![plan.warmup_steps],
        )?)
    } else {
        None
    };
    let rate_at = |step: usize| schedule.as_ref().map_or(lr, |s| s.lr(lr, step));

    let bar = common::progress(plan.steps as u64, &name);
    let mut losses = Vec::with_capacity(plan.steps);
    // Every run starts from the same weights, so λ_max at step 0 is the one measured before.
    let mut sharpness = vec![(0, rate_at(0), lambda_init)];
    for step in 0..plan.steps {
        opt.set_lr(rate_at(step))?;
        let tape = Tape::new();
        let (ctx, loss) = full_batch_loss(&mut model, &tape, train);
        let value = f64::from(loss.value().item());
        losses.push(value);
        if !value.is_finite() {
            break;
        }
        let tracked = step > 0 && step <= plan.track_until && step % plan.track_every == 0;
        if tracked {
            // The sharpness of this very loss: its gradient graph is recorded after the
            // forward pass, and the training backward below sweeps only up to the loss.
            let top = sharpness_of(&ctx, loss, &plan.track_power)?;
            sharpness.push((step, rate_at(step), top.eigenvalue));
        }
        let grads = ctx.param_grads(&loss.backward());
        opt.step(&mut model, &grads)?;
        bar.inc(1);
        if step % 10 == 0 {
            bar.set_message(format!("loss {value:.4}"));
        }
    }
    let last_finite = losses.last().is_some_and(|l| l.is_finite());
    if last_finite && losses.len() == plan.steps {
        let tape = Tape::new();
        let (ctx, loss) = full_batch_loss(&mut model, &tape, train);
        let top = sharpness_of(&ctx, loss, &plan.track_power)?;
        sharpness.push((plan.steps, rate_at(plan.steps), top.eigenvalue));
    }
    let test_accuracy = if last_finite {
        accuracy(&mut model, test)
    } else {
        f64::NAN
    };
    let verdict = Verdict::judge(&losses);
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    println!(
        "  {name:<24} final loss {:<10.4} {:<20} {seconds:.1} s",
        losses[losses.len() - 1],
        verdict.describe()
    );
    Ok(Run {
        name,
        lr,
        scheduled,
        losses,
        sharpness,
        test_accuracy,
        verdict,
        seconds,
    })
}

/// Accuracy on `data`, with gradients off (the tape records values only).
fn accuracy(model: &mut Sequential<F>, data: &Dataset<F>) -> f64 {
    let tape = Tape::new();
    tape.set_grad_enabled(false);
    let logits = model
        .forward(&mut Ctx::new(&tape), tape.constant(data.x.clone()))
        .value();
    let classes = logits.shape()[1];
    let correct = logits
        .data()
        .chunks(classes)
        .zip(&data.y)
        .filter(|(row, &label)| row.iter().all(|&z| z <= row[label]))
        .count();
    correct as f64 / data.len() as f64
}

fn print_convergence(top: &TopEigen<F>) {
    let h = &top.history;
    // The first few products, then every tenth: enough to see the estimate settle.
    for (i, est) in h.iter().enumerate() {
        if i < 5 || (i + 1) % 10 == 0 || i + 1 == h.len() {
            let change = if i > 0 {
                (est - h[i - 1]).abs() / est.abs()
            } else {
                f64::NAN
            };
            println!(
                "  product {:>3}: vᵀHv = {est:.6}   relative change {change:.1e}",
                i + 1
            );
        }
    }
    if let Some(mu) = top.shifted_from {
        println!("  (the dominant eigenvalue was negative, {mu:.4}; shifted by it and run again)");
    }
    println!(
        "  {} after {} products",
        if top.converged {
            "converged"
        } else {
            "stopped without converging"
        },
        h.len()
    );
}

/// The results as an aligned text table.
fn results_table(runs: &[Run]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<23} {:>10} {:>10} {:>8} {:>11} {:>8}  verdict",
        "run", "final loss", "lowest", "test acc", "λ_max (end)", "lr·λ_end"
    );
    for r in runs {
        let lowest = r.losses.iter().copied().fold(f64::INFINITY, f64::min);
        let (lambda_end, product) = match r.sharpness.last() {
            Some(&(step, rate, lambda)) if step == r.losses.len() => {
                (format!("{lambda:.3}"), format!("{:.2}", rate * lambda))
            }
            _ => ("-".into(), "-".into()),
        };
        let accuracy = if r.test_accuracy.is_nan() {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * r.test_accuracy)
        };
        let _ = writeln!(
            t,
            "{:<23} {:>10.4e} {:>10.4e} {accuracy:>8} {lambda_end:>11} {product:>8}  {}",
            r.name,
            r.final_loss(),
            lowest,
            r.verdict.describe()
        );
    }
    t
}

/// The comparison of 2/λ_max with the sweep, in numbers and words.
fn print_interpretation(
    lambda_max: f64,
    runs: &[Run],
    smallest_failing: Option<f64>,
    smallest_diverging: Option<f64>,
) {
    let limit = 2.0 / lambda_max;
    let constant = || runs.iter().filter(|r| !r.scheduled);
    let largest_ok = constant()
        .filter(|r| !r.verdict.failed())
        .map(|r| r.lr)
        .fold(None, |m: Option<f64>, lr| Some(m.map_or(lr, |m| m.max(lr))));
    let show = |x: Option<f64>| x.map_or("none in the sweep".to_string(), |x| format!("{x}"));
    println!("curvature against the sweep:");
    println!("  2/λ_max at initialisation        {limit:.3}");
    println!("  largest rate that trained        {}", show(largest_ok));
    println!(
        "  smallest rate that failed        {}",
        show(smallest_failing)
    );
    println!(
        "  smallest rate that reached NaN   {}",
        show(smallest_diverging)
    );
    // The highest sharpness seen early in a run that never jumped up: how far the curvature
    // rose on its own, before any instability reshaped it.
    let sharpened = constant()
        .filter(|r| matches!(r.verdict, Verdict::Smooth | Verdict::Crawls))
        .flat_map(|r| r.sharpness.iter().map(|&(_, _, l)| l))
        .filter(|l| l.is_finite())
        .fold(lambda_max, f64::max);
    println!(
        "  highest λ_max met by smooth runs {sharpened:.3}  (2/λ = {:.3})",
        2.0 / sharpened
    );
    // Does the sharpened limit split this sweep into smooth runs below and troubled ones above?
    let sharp_limit = 2.0 / sharpened;
    let splits = constant().all(|r| {
        let calm = matches!(r.verdict, Verdict::Smooth | Verdict::Crawls);
        calm == (r.lr < sharp_limit)
    });
    let separates = if splits && sharpened > 1.5 * lambda_max {
        format!(
            " In this sweep the sharpened limit {sharp_limit:.3} separates the runs exactly: \
             every rate below it ran smoothly, every rate above it spiked, failed or diverged."
        )
    } else {
        String::new()
    };
    let failing = smallest_failing.map_or(String::new(), |f| {
        format!(", and the first rate that failed is {:.2}× that", f / limit)
    });
    let text = format!(
        "2/λ_max is exact for a quadratic: along the top eigenvector each step multiplies the \
         error by (1 − lr·λ_max), whose size exceeds 1 past lr = 2/λ_max. Here it is {limit:.3}{failing}. \
         The loss is not a quadratic, and its curvature moves: during training λ_max rose from \
         {lambda_max:.3} to {sharpened:.3} even in runs that never spiked (progressive sharpening). \
         A rate above the new limit {:.3} is unstable there. Such a run either spikes, which \
         throws the weights into a flatter region where lr·λ_max < 2 and lets training go on \
         (with λ_max then hovering just under 2/lr for a while: the edge of stability; the \
         lower plot shows it, and lr·λ_end in the table where each run ended), or, when the \
         rate is too far past the limit, blows up. So 2/λ_max at initialisation is an \
         order-of-magnitude guide to the largest usable rate, not a sharp threshold.{separates}",
        2.0 / sharpened
    );
    println!("\n{}", common::wrap(&text, common::COLUMNS));
}

fn write_file(path: &Path, contents: &str) -> Result<PathBuf, Box<dyn Error>> {
    std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

/// `step,<run>,<run>,…`: the loss before each step; empty once a run has stopped.
fn loss_csv(runs: &[Run]) -> String {
    let mut s = String::from("step");
    for r in runs {
        let _ = write!(s, ",{}", r.name);
    }
    s.push('\n');
    let steps = runs.iter().map(|r| r.losses.len()).max().unwrap_or(0);
    for t in 0..steps {
        let _ = write!(s, "{t}");
        for r in runs {
            match r.losses.get(t) {
                Some(l) => {
                    let _ = write!(s, ",{l}");
                }
                None => s.push(','),
            }
        }
        s.push('\n');
    }
    s
}

fn sharpness_csv(runs: &[Run]) -> String {
    let mut s = String::from("run,step,lr,lambda_max,two_over_lr\n");
    for r in runs {
        for &(step, lr, lambda) in &r.sharpness {
            let _ = writeln!(s, "{},{step},{lr},{lambda},{}", r.name, 2.0 / lr);
        }
    }
    s
}

fn power_csv(top: &TopEigen<F>) -> String {
    let mut s = String::from("product,rayleigh_quotient\n");
    for (i, est) in top.history.iter().enumerate() {
        let _ = writeln!(s, "{},{est}", i + 1);
    }
    s
}

fn results_csv(runs: &[Run]) -> String {
    let mut s = String::from(
        "run,lr,scheduled,steps_run,final_loss,test_accuracy,lambda_max_end,verdict\n",
    );
    for r in runs {
        let lambda_end = match r.sharpness.last() {
            Some(&(step, _, lambda)) if step == r.losses.len() => lambda.to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{lambda_end},{:?}",
            r.name,
            r.lr,
            r.scheduled,
            r.losses.len(),
            r.final_loss(),
            r.test_accuracy,
            r.verdict
        );
    }
    s
}

/// Distinct colours (matplotlib's "tab10"), one per run.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A value on either panel's log axis, written the same way in both: `1e-4`, `0.03`, `2`, `250`.
fn log_tick(y: f64) -> String {
    if y == 0.0 || !y.is_finite() {
        return format!("{y}");
    }
    let e = y.abs().log10().floor();
    if (-2.0..5.0).contains(&e) {
        // Up to two significant digits, no trailing zeros.
        let digits = (1.0 - e).max(0.0) as usize;
        let s = format!("{y:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{y:.0e}")
    }
}

/// The loss curves (log scale) above the sharpness measured in the first steps, with each
/// constant run's stability limit 2/lr dashed in its colour. The legend has a column of its own
/// to the right of both panels, so it never covers a curve, and both panels write their ticks
/// with [`log_tick`].
fn plot(
    path: &Path,
    runs: &[Run],
    lambda_max: f64,
    track_until: usize,
) -> Result<PathBuf, Box<dyn Error>> {
    let root = SVGBackend::new(path, (1300, 1100)).into_drawing_area();
    root.fill(&WHITE)?;
    let (charts, legend) = root.split_horizontally(960);
    let (upper, lower) = charts.split_vertically(620);
    let colour = |i: usize| COLOURS[i % COLOURS.len()];
    // plotters' SVG text is 0.81 of the size asked for: 18 gives 14.5 px tick labels.
    let ticks = ("sans-serif", 18);
    let desc = ("sans-serif", 20);

    // Loss: from just under the lowest value to well above the start; a diverging run leaves
    // through the top edge, and its line ends where the loss stopped being finite.
    let finite = || {
        runs.iter()
            .flat_map(|r| &r.losses)
            .copied()
            .filter(|l| l.is_finite())
    };
    let lo = finite()
        .filter(|&l| l > 0.0)
        .fold(f64::INFINITY, f64::min)
        .max(1e-6)
        / 2.0;
    let start = runs.first().map_or(1.0, |r| r.losses[0]);
    let hi = 100.0 * start;
    let steps = runs.iter().map(|r| r.losses.len()).max().unwrap_or(1);
    let mut chart = ChartBuilder::on(&upper)
        .caption(
            "Training loss across learning rates (full-batch gradient descent)",
            ("sans-serif", 26),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..steps as f64, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("training loss (log scale)")
        .y_label_formatter(&|y| log_tick(*y))
        .label_style(ticks)
        .axis_desc_style(desc)
        .draw()?;
    for (i, r) in runs.iter().enumerate() {
        let style = colour(i).stroke_width(if r.scheduled { 3 } else { 2 });
        let points = r
            .losses
            .iter()
            .take_while(|l| l.is_finite())
            .enumerate()
            .map(|(t, &l)| (t as f64, l.clamp(lo, hi)));
        chart.draw_series(LineSeries::new(points, style))?;
    }

    // The legend: a line in the run's colour, its name and outcome.
    legend.draw(&Text::new("runs", (10, 70), ("sans-serif", 20)))?;
    for (i, r) in runs.iter().enumerate() {
        let y = 105 + 32 * i as i32;
        let style = colour(i).stroke_width(if r.scheduled { 4 } else { 3 });
        legend.draw(&PathElement::new(vec![(10, y), (40, y)], style))?;
        let label = match r.verdict {
            Verdict::Diverges => format!("{}: NaN at step {}", r.name, r.losses.len() - 1),
            v => format!("{}: {}", r.name, v.describe()),
        };
        legend.draw(&Text::new(label, (48, y - 9), ticks))?;
    }
    let note_y = 105 + 32 * runs.len() as i32;
    legend.draw(&PathElement::new(
        vec![(10, note_y), (16, note_y)],
        BLACK.stroke_width(1),
    ))?;
    legend.draw(&PathElement::new(
        vec![(22, note_y), (28, note_y)],
        BLACK.stroke_width(1),
    ))?;
    legend.draw(&Text::new("2/lr (lower panel)", (48, note_y - 9), ticks))?;

    // Sharpness in the first steps, where it moves the most. Diverging runs are left out: their
    // curvature explodes with their weights and would squash the others flat.
    let shown = |r: &Run| r.verdict != Verdict::Diverges;
    let measured = |r: &Run| {
        r.sharpness
            .iter()
            .filter(|&&(step, _, l)| step <= track_until && l.is_finite() && l > 0.0)
            .map(|&(step, _, l)| (step as f64, l))
            .collect::<Vec<_>>()
    };
    let all: Vec<f64> = runs
        .iter()
        .filter(|r| shown(r))
        .flat_map(&measured)
        .map(|(_, l)| l)
        .collect();
    let s_lo = all.iter().copied().fold(lambda_max, f64::min) / 2.0;
    let s_hi = all.iter().copied().fold(lambda_max, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&lower)
        .caption(
            "Sharpness λ_max in the first steps (diverging runs left out)",
            ("sans-serif", 24),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..track_until as f64, (s_lo..s_hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("top Hessian eigenvalue λ_max (log scale)")
        .y_label_formatter(&|y| log_tick(*y))
        .label_style(ticks)
        .axis_desc_style(desc)
        .draw()?;
    for (i, r) in runs.iter().enumerate().filter(|(_, r)| shown(r)) {
        let style = colour(i).stroke_width(2);
        chart.draw_series(LineSeries::new(measured(r), style))?;
        let limit = 2.0 / r.lr;
        if !r.scheduled && (s_lo..s_hi).contains(&limit) {
            chart.draw_series(DashedLineSeries::new(
                [(0.0, limit), (track_until as f64, limit)],
                6,
                4,
                colour(i).stroke_width(1),
            ))?;
        }
    }
    root.present()?;
    Ok(path.to_path_buf())
}
