//! Smoke tests of the examples: each runs in its quick mode, and what it reports is checked.
//!
//! The example files are compiled into this test as modules (`#[path]`), so `cargo test` runs
//! them without a nested `cargo run`; their `main`s go unused here. Their command lines are
//! tested as processes all the same: this test binary runs itself as the child, with an
//! environment variable naming the example and its arguments (see [`example_child`]), so the
//! exit codes and what reaches stdout and stderr are the real ones.

// Each example includes examples/common/mod.rs, as its own crate would; here they are modules
// of one crate, so the file is loaded once per example, on purpose.
#![allow(clippy::duplicate_mod)]
// The examples plot, export JSON, write checkpoints and TensorBoard runs: they need the default
// features.
#![cfg(all(
    feature = "plot",
    feature = "json",
    feature = "safetensors",
    feature = "tensorboard"
))]

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

#[allow(dead_code)]
#[path = "../examples/learning_rate.rs"]
mod learning_rate;

#[allow(dead_code)]
#[path = "../examples/vanishing.rs"]
mod vanishing;

#[allow(dead_code)]
#[path = "../examples/gradient_flow.rs"]
mod gradient_flow;

#[allow(dead_code)]
#[path = "../examples/resume.rs"]
mod resume;

use learning_rate::{Options, Verdict};
use std::path::{Path, PathBuf};
use std::process::Stdio;

#[test]
fn quickstart_learns_two_moons() {
    // 60 steps is `--quick`; chance is 50%.
    let quick = quickstart::train(60).unwrap();
    assert!(quick > 0.9, "quick run: test accuracy {quick}");
    // The full run is cheap too, and the example promises at least 95%.
    let full = quickstart::train(200).unwrap();
    assert!(full >= 0.95, "full run: test accuracy {full}");
}

#[test]
fn learning_rate_quick_run_shows_every_regime_and_writes_its_files() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples_smoke_learning_rate");
    let _ = std::fs::remove_dir_all(&out);
    let opts = Options::from_args([
        "--quick".to_string(),
        "--out".into(),
        out.display().to_string(),
    ])
    .unwrap();
    let summary = learning_rate::run(&opts).unwrap();

    // Curvature at initialisation, from the Hessian-vector product power iteration.
    let lambda = summary.lambda_max;
    assert!(lambda.is_finite() && lambda > 0.0, "λ_max = {lambda}");
    assert!(!summary.power_history.is_empty());

    // The sweep: the smallest rate makes progress; the largest really diverges.
    let constant: Vec<_> = summary.runs.iter().filter(|r| !r.scheduled).collect();
    let (smallest, largest) = (constant[0], constant[constant.len() - 1]);
    assert!(smallest.final_loss() < smallest.losses[0], "{smallest:?}");
    assert!(!smallest.verdict.failed());
    assert_eq!(largest.verdict, Verdict::Diverges, "{:?}", largest.losses);
    assert!(!largest.final_loss().is_finite());
    assert!(largest.losses.len() < 30, "diverged runs stop early");
    assert_eq!(summary.smallest_diverging_lr, Some(largest.lr));
    // Sharpness was measured during training, not only at initialisation.
    assert!(smallest.sharpness.len() > 2, "{:?}", smallest.sharpness);
    assert!(smallest.sharpness.iter().all(|s| s.2.is_finite()));
    // The scheduled run comes last.
    assert!(summary.runs.last().unwrap().scheduled);

    // Every file is there and holds what it should.
    assert_eq!(summary.files.len(), 5);
    for f in &summary.files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len > 0, "{} is empty", f.display());
    }
    let csv = std::fs::read_to_string(out.join("loss_curves.csv")).unwrap();
    assert!(csv.starts_with("step,lr=0.1,"), "{}", &csv[..40]);
    assert_eq!(csv.lines().count(), 31); // header + 30 steps
    let svg = std::fs::read_to_string(out.join("learning_rate.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("lr=64: NaN at step"));
    assert!(svg.contains("training loss (log scale)"));
}

#[test]
fn learning_rate_arguments() {
    use learning_rate::common::Stop;
    let parse = |args: &[&str]| Options::from_args(args.iter().map(|s| s.to_string()));
    let default = parse(&[]).unwrap();
    assert!(!default.quick);
    assert_eq!(default.out, PathBuf::from("out/learning_rate"));
    let o = parse(&["--out", "somewhere", "--quick"]).unwrap();
    assert!(o.quick);
    assert_eq!(o.out, PathBuf::from("somewhere"));
    assert_eq!(parse(&["--out=there"]).unwrap().out, PathBuf::from("there"));
    let usage_error = |args: &[&str], needle: &str| match parse(args) {
        Err(Stop::Usage(text)) => assert!(
            text.contains(needle) && text.contains("usage: learning_rate"),
            "{args:?}: {text}"
        ),
        other => panic!("{args:?}: {other:?}"),
    };
    usage_error(&["--out"], "--out needs a value (DIR)");
    usage_error(&["--fast"], "unknown option `--fast`");
    usage_error(&["--quick=yes"], "unknown option `--quick=yes`");
    usage_error(&["somewhere"], "unexpected argument `somewhere`");
    for help in ["--help", "-h"] {
        match parse(&["--quick", help, "--fast"]) {
            Err(Stop::Help(text)) => assert!(text.contains("usage: learning_rate [--quick]")),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn vanishing_arguments() {
    use vanishing::common::Stop;
    let parse = |args: &[&str]| vanishing::Options::from_args(args.iter().map(|s| s.to_string()));
    let o = parse(&[]).unwrap();
    assert_eq!((o.quick, o.epochs), (false, 20));
    assert_eq!(o.out, PathBuf::from("out/vanishing"));
    assert_eq!(parse(&["--quick"]).unwrap().epochs, 2);
    assert_eq!(parse(&["--quick", "--epochs", "7"]).unwrap().epochs, 7);
    assert_eq!(parse(&["--epochs=3"]).unwrap().epochs, 3);
    for (args, needle) in [
        (
            &["--epochs", "x"][..],
            "`x` is not a valid value for --epochs",
        ),
        (&["--epochs", "0"], "--epochs must be at least 1"),
        (&["--epochs"], "--epochs needs a value (N)"),
    ] {
        match parse(args) {
            Err(Stop::Usage(text)) => assert!(text.contains(needle), "{args:?}: {text}"),
            other => panic!("{args:?}: {other:?}"),
        }
    }
}

// ---- The examples as processes ---------------------------------------------------------------

/// Names the example a child runs, then its arguments, separated by U+001F.
const CHILD: &str = "VGRAD_EXAMPLE_CHILD";

/// Every example, and the files its quick run writes into `--out` (`None`: it takes no `--out`).
const EXAMPLES: [(&str, Option<&[&str]>); 5] = [
    ("quickstart", None),
    (
        "learning_rate",
        Some(&[
            "learning_rate.svg",
            "loss_curves.csv",
            "power_iteration.csv",
            "results.csv",
            "sharpness.csv",
        ]),
    ),
    (
        "vanishing",
        Some(&[
            "diagnoses.txt",
            "gradient_flow.svg",
            "heatmap_elu_he.svg",
            "heatmap_leaky_relu_he.svg",
            "heatmap_relu_he.svg",
            "heatmap_relu_he_batchnorm.svg",
            "heatmap_relu_xavier.svg",
            "heatmap_residual_relu_he.svg",
            "heatmap_shallow_2_hidden_relu.svg",
            "heatmap_sigmoid_batchnorm.svg",
            "heatmap_sigmoid_xavier.svg",
            "heatmap_tanh_xavier.svg",
            "heatmaps.svg",
            "mean_max_sigmoid_xavier.svg",
            "records.csv",
            "report_elu_he.html",
            "report_leaky_relu_he.html",
            "report_relu_he.html",
            "report_relu_he_batchnorm.html",
            "report_relu_xavier.html",
            "report_residual_relu_he.html",
            "report_shallow_2_hidden_relu.html",
            "report_sigmoid_batchnorm.html",
            "report_sigmoid_xavier.html",
            "report_tanh_xavier.html",
            "summary.csv",
            "tensorboard",
        ]),
    ),
    (
        "gradient_flow",
        Some(&[
            "backprop.svg",
            "flow.svg",
            "heatmap.svg",
            "heatmap_diverging.svg",
            "mean_max.svg",
            "report.html",
            "signal.svg",
            "training.csv",
            "training.json",
        ]),
    ),
    (
        "resume",
        Some(&["model.safetensors", "optimizer.safetensors"]),
    ),
];

/// Not a test of its own: in a normal run it returns at once. In a child started by
/// [`run_example`] it runs the example's command line and exits with the example's code, so
/// nothing of the test harness's own follows the example's output.
#[test]
fn example_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let mut parts = spec.split('\u{1f}').map(String::from);
    let name = parts.next().unwrap_or_default();
    let code = match name.as_str() {
        "quickstart" => quickstart::cli(parts),
        "learning_rate" => learning_rate::cli(parts),
        "vanishing" => vanishing::cli(parts),
        "gradient_flow" => gradient_flow::cli(parts),
        "resume" => resume::cli(parts),
        other => panic!("no example {other}"),
    };
    std::process::exit(code.into());
}

/// What an example's process did.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `example` with `args` in a child process whose stdout and stderr are pipes, not a
/// terminal, as when its output goes to a log file.
fn run_example(example: &str, args: &[&str]) -> Ran {
    let spec = std::iter::once(example)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join("\u{1f}");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "example_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD, spec)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    // The harness announces its one test before the example runs; the rest is the example's.
    let stdout = match stdout.split_once("running 1 test\n") {
        Some((_, rest)) => rest.to_string(),
        None => stdout,
    };
    Ran {
        code: out.status.code(),
        stdout,
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Lines that may not fit a terminal's 100 columns, leaving out those that name `except` (a
/// path the caller chose, as long as it is). Counted in bytes, as the examples do (and as
/// `awk '{ print length($0) }'` does with mawk): at most 100 bytes always fits 100 columns.
fn too_wide<'a>(text: &'a str, except: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.len() > 100 && (except.is_empty() || !l.contains(except)))
        .collect()
}

#[test]
fn every_example_prints_its_help_and_exits_0() {
    for (name, files) in EXAMPLES {
        for flag in ["--help", "-h"] {
            let ran = run_example(name, &[flag]);
            assert_eq!(ran.code, Some(0), "{name} {flag}: {ran:?}");
            assert!(ran.stderr.is_empty(), "{name} {flag}: {ran:?}");
            let usage = format!("usage: {name} [--quick]");
            assert!(ran.stdout.contains(&usage), "{name}: {}", ran.stdout);
            for option in ["--quick", "-h, --help"] {
                assert!(ran.stdout.contains(option), "{name}: {}", ran.stdout);
            }
            // --out is offered exactly by the examples that write files.
            assert_eq!(ran.stdout.contains("--out DIR"), files.is_some(), "{name}");
            assert!(too_wide(&ran.stdout, "").is_empty(), "{}", ran.stdout);
        }
    }
}

#[test]
fn a_bad_command_line_exits_2_with_the_usage_on_stderr() {
    let mut cases = Vec::new();
    for (name, files) in EXAMPLES {
        cases.push((name, vec!["--fast"], "unknown option `--fast`"));
        // The old convention of gradient_flow and resume: a bare folder.
        cases.push((name, vec!["some-dir"], "unexpected argument `some-dir`"));
        match files {
            Some(_) => cases.push((name, vec!["--quick", "--out"], "--out needs a value (DIR)")),
            None => cases.push((name, vec!["--out", "x"], "unknown option `--out`")),
        }
    }
    cases.push((
        "vanishing",
        vec!["--epochs", "many"],
        "not a valid value for --epochs",
    ));
    for (name, args, needle) in cases {
        let ran = run_example(name, &args);
        assert_eq!(ran.code, Some(2), "{name} {args:?}: {ran:?}");
        assert!(ran.stdout.is_empty(), "{name} {args:?}: {ran:?}");
        assert!(
            ran.stderr.contains(needle),
            "{name} {args:?}: {}",
            ran.stderr
        );
        let usage = format!("usage: {name} [--quick]");
        assert!(
            ran.stderr.contains(&usage),
            "{name} {args:?}: {}",
            ran.stderr
        );
    }
}

#[test]
fn a_failed_run_exits_1_with_the_error_on_stderr() {
    // The output folder cannot be made: a file stands where its parent should be.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples_smoke_cli_fail");
    std::fs::create_dir_all(&tmp).unwrap();
    let file = tmp.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let out = file.join("out");
    let ran = run_example("resume", &["--quick", "--out", out.to_str().unwrap()]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stderr.starts_with("error: "), "{ran:?}");
}

/// Each example's quick run as a process whose output is not a terminal: it writes its files
/// into `--out`, and its output holds no carriage return (the progress bars stay hidden) and
/// fits 100 columns.
fn quick_run_writes_into_out(name: &str, files: Option<&[&str]>) {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("examples_smoke_cli_{name}"));
    let _ = std::fs::remove_dir_all(&out);
    let mut args = vec!["--quick"];
    let out_arg = out.display().to_string();
    if files.is_some() {
        args.extend(["--out", &out_arg]);
    }
    let ran = run_example(name, &args);
    assert_eq!(ran.code, Some(0), "{name}: {ran:?}");
    assert!(!ran.stdout.contains('\r'), "{name}: {:?}", ran.stdout);
    assert!(!ran.stderr.contains('\r'), "{name}: {:?}", ran.stderr);
    // Not a terminal: the progress bars write nothing at all.
    assert!(ran.stderr.is_empty(), "{name}: {:?}", ran.stderr);
    assert!(!ran.stdout.trim().is_empty(), "{name}");
    let wide = too_wide(&ran.stdout, &out_arg);
    assert!(wide.is_empty(), "{name}: lines over 100 columns: {wide:#?}");
    match files {
        Some(expected) => {
            let mut written: Vec<String> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            written.sort();
            assert_eq!(written, expected, "{name}");
            for f in expected {
                let len = std::fs::metadata(out.join(f)).unwrap().len();
                assert!(len > 0, "{name}: {f} is empty");
            }
            assert!(ran.stdout.contains(&out_arg), "{name} names its folder");
        }
        None => assert!(!Path::new(&out).exists()),
    }
}

#[test]
fn quickstart_as_a_process() {
    quick_run_writes_into_out("quickstart", EXAMPLES[0].1);
}

#[test]
fn learning_rate_as_a_process() {
    quick_run_writes_into_out("learning_rate", EXAMPLES[1].1);
}

#[test]
fn vanishing_as_a_process() {
    quick_run_writes_into_out("vanishing", EXAMPLES[2].1);
}

#[test]
fn gradient_flow_as_a_process() {
    quick_run_writes_into_out("gradient_flow", EXAMPLES[3].1);
}

#[test]
fn resume_as_a_process() {
    quick_run_writes_into_out("resume", EXAMPLES[4].1);
}

#[test]
fn vanishing_quick_run_tells_the_story_and_writes_its_files() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples_smoke_vanishing");
    let _ = std::fs::remove_dir_all(&out);
    let opts = vanishing::Options::from_args([
        "--quick".to_string(),
        "--out".into(),
        out.display().to_string(),
    ])
    .unwrap();
    let summary = vanishing::run(&opts).unwrap();
    let by = |name: &str| summary.runs.iter().find(|r| r.name == name).unwrap();

    // The classic failure: almost nothing reaches the first layer of the sigmoid stack.
    let sigmoid = by("sigmoid + Xavier");
    assert!(sigmoid.ratio_step0 < 1e-20, "{sigmoid:?}");
    assert_eq!(sigmoid.verdict, vgrad::monitor::Verdict::VanishingGradients);
    // He initialisation keeps the gradient's scale at initialisation.
    let he = by("ReLU + He");
    assert!((0.1..10.0).contains(&he.ratio_step0), "{he:?}");
    // BatchNorm without skips makes gradients grow toward the input.
    let bn = by("ReLU + He + BatchNorm");
    assert!(bn.ratio_step0 > 1e2, "{bn:?}");
    // Every run finished with finite numbers and a diagnosis.
    for r in &summary.runs {
        assert!(r.loss.0.is_finite() && !r.diagnosis.is_empty(), "{r:?}");
        assert!((0.0..=1.0).contains(&r.test_acc));
    }
    for f in &summary.files {
        let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{} is empty", f.display());
    }
}

#[test]
fn gradient_flow_quick_run_writes_every_plot_and_record() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples_smoke_gradient_flow");
    let _ = std::fs::remove_dir_all(&out);
    let files = gradient_flow::run(&out, 5).unwrap();
    // 3 flow plots, the mean-and-max view, 2 heatmaps, CSV, JSON, the HTML report
    assert_eq!(files.len(), 9, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.len() > 100, "{} is nearly empty", f.display());
    }
    let flow = std::fs::read_to_string(out.join("flow.svg")).unwrap();
    assert!(flow.starts_with("<svg") && flow.contains("sigmoid + Xavier"));
}

#[test]
fn resume_quick_run_continues_exactly_and_a_fresh_optimiser_does_not() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples_smoke_resume");
    let _ = std::fs::remove_dir_all(&out);
    let s = resume::run(4, &out).unwrap();
    assert_eq!(s.resumed_at, 2);
    assert_eq!(s.uninterrupted.len(), 4);
    // Same weights and data order, same operations: the resumed run is the uninterrupted one,
    // bit for bit (the example's claim), so its losses' bits and its weights agree exactly.
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&s.resumed), bits(&s.uninterrupted));
    assert!(s.resumed_max_diff.to_bits() == 0, "{}", s.resumed_max_diff);
    assert!((s.test_accuracy[0] - s.test_accuracy[1]).abs() < 1e-12);
    // Without the optimiser's state the first epoch after the restart already differs.
    let (a, c) = (s.uninterrupted[2], s.weights_only[2]);
    assert!((a - c).abs() > 1e-3 * a, "{a} vs {c}");
    assert!(
        s.weights_only_max_diff > 1e-3,
        "{}",
        s.weights_only_max_diff
    );
    // Both checkpoint files were written, and nothing else (no temporary files left).
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["model.safetensors", "optimizer.safetensors"]);
}
