//! Smoke tests of the examples: each runs in its quick mode, and what it reports is checked.
//!
//! The example files are compiled into this test as modules (`#[path]`), so `cargo test` runs
//! them without a nested `cargo run`; their `main`s go unused here.

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
use std::path::PathBuf;

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
    let parse = |args: &[&str]| Options::from_args(args.iter().map(|s| s.to_string()));
    let default = parse(&[]).unwrap();
    assert!(!default.quick);
    assert_eq!(default.out, PathBuf::from("out/learning_rate"));
    let o = parse(&["--out", "somewhere", "--quick"]).unwrap();
    assert!(o.quick);
    assert_eq!(o.out, PathBuf::from("somewhere"));
    assert!(parse(&["--out"]).is_err());
    assert!(parse(&["--fast"])
        .unwrap_err()
        .contains("unknown argument `--fast`"));
    assert!(parse(&["--help"]).unwrap_err().starts_with("usage:"));
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
    assert_eq!(files.len(), 7, "{files:?}"); // 3 flow plots, 2 heatmaps, CSV, JSON
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
