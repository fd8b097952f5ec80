//! Optimisers, learning-rate schedules and gradient clipping against PyTorch.
//!
//! Provenance: `tests/golden/optim.json` is written by `tests/golden/optim_gen.py` (PyTorch 2.15,
//! `foreach=False`); the script's docstring describes every case. Nothing here needs Python.
//! Each optimiser case also checks the exported state (`Optimizer::state_dict`, what
//! `save_optimizer` writes) against PyTorch's `opt.state` after the third step.
//!
//! Tolerances: float64 cases must agree to 1e-10 relative (the only differences are the order
//! of floating-point operations, amplified a little over three steps); float32 cases to 2e-5
//! relative with a 1e-6 absolute floor (PyTorch's f32 forward/backward kernels round
//! differently from vgrad's). Schedules and plateau rates are scalar f64 formulas: 1e-12.

use serde_json::Value;
use std::collections::HashMap;
use vgrad::nn::{
    clip_grad_norm, clip_grad_norm_p, clip_grad_value, Activation, Adam, AdamConfig, AdamW,
    AdamWConfig, CosineAnnealingLr, Ctx, ExponentialLr, LinearWarmup, LrSchedule, LrScheduler,
    Module, Optimizer, Param, ParamGrads, ParamGroup, ParamId, PlateauConfig, PlateauMode,
    ReduceLrOnPlateau, RmsProp, RmsPropConfig, SequentialLr, Sgd, SgdConfig, StepLr, ThresholdMode,
};
use vgrad::nn::{Linear, Sequential};
use vgrad::{Element, Tape, Tensor};

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/optim.json")).expect("optim.json parses")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn shape(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("a shape")
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn tensor<T: Element>(v: &Value) -> Tensor<T> {
    let data = floats(&v["data"]).into_iter().map(T::of).collect();
    Tensor::from_vec(data, &shape(&v["shape"])).unwrap()
}

/// `|a − b| ≤ atol + rtol·|b|` for every element, with a message naming the first offender.
fn assert_close(what: &str, actual: &[f64], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= atol + rtol * e.abs(),
            "{what}[{i}]: vgrad {a:e}, PyTorch {e:e} (diff {:e})",
            (a - e).abs()
        );
    }
}

fn to_f64<T: Element>(t: &Tensor<T>) -> Vec<f64> {
    t.data().iter().map(|x| x.to_f64().unwrap()).collect()
}

/// The golden model, with its parameters' ids by dotted name (to drop frozen gradients).
fn model<T: Element>(g: &Value) -> (Sequential<T>, HashMap<String, ParamId>) {
    let init = &g["model"]["init"];
    let layer = |i: usize| {
        Linear::from_tensors(
            tensor::<T>(&init[format!("{i}.weight")]),
            Some(tensor::<T>(&init[format!("{i}.bias")])),
        )
        .unwrap()
    };
    let (l0, l2) = (layer(0), layer(2));
    let mut ids = HashMap::new();
    for (i, l) in [(0, &l0), (2, &l2)] {
        ids.insert(format!("{i}.weight"), l.weight().id());
        ids.insert(format!("{i}.bias"), l.bias().unwrap().id());
    }
    let net = Sequential::new().push(l0).push(Activation::Tanh).push(l2);
    (net, ids)
}

/// The optimiser a case names, with `groups` added in order.
fn optimizer<T: Element>(
    class: &str,
    cfg: &Value,
    groups: Vec<ParamGroup>,
) -> Box<dyn Optimizer<T>> {
    macro_rules! grouped {
        ($opt:expr) => {{
            let mut o = $opt.unwrap();
            for g in groups {
                o = o.with_group(g).unwrap();
            }
            Box::new(o)
        }};
    }
    let f = |k: &str, default: f64| cfg.get(k).and_then(Value::as_f64).unwrap_or(default);
    let betas = |d: (f64, f64)| {
        cfg.get("betas")
            .map(|b| (b[0].as_f64().unwrap(), b[1].as_f64().unwrap()))
            .unwrap_or(d)
    };
    match class {
        "SGD" => {
            let d = SgdConfig::default();
            grouped!(Sgd::new(SgdConfig {
                lr: f("lr", d.lr),
                momentum: f("momentum", d.momentum),
                dampening: f("dampening", d.dampening),
                nesterov: cfg
                    .get("nesterov")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                weight_decay: f("weight_decay", d.weight_decay),
            }))
        }
        "Adam" => {
            let d = AdamConfig::default();
            grouped!(Adam::new(AdamConfig {
                lr: f("lr", d.lr),
                betas: betas(d.betas),
                eps: f("eps", d.eps),
                weight_decay: f("weight_decay", d.weight_decay),
            }))
        }
        "AdamW" => {
            let d = AdamWConfig::default();
            grouped!(AdamW::new(AdamWConfig {
                lr: f("lr", d.lr),
                betas: betas(d.betas),
                eps: f("eps", d.eps),
                weight_decay: f("weight_decay", d.weight_decay),
            }))
        }
        "RMSprop" => {
            let d = RmsPropConfig::default();
            grouped!(RmsProp::new(RmsPropConfig {
                lr: f("lr", d.lr),
                alpha: f("alpha", d.alpha),
                eps: f("eps", d.eps),
                weight_decay: f("weight_decay", d.weight_decay),
                momentum: f("momentum", d.momentum),
                centered: cfg
                    .get("centered")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }))
        }
        other => panic!("unknown optimiser {other}"),
    }
}

/// How a case's steps are run: gradients collected, then `step`; or `backward_step`.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    TwoCalls,
    Fused,
}

fn run_optimizer_case<T: Element>(g: &Value, case: &Value, rtol: f64, atol: f64, path: Path) {
    let name = case["name"].as_str().unwrap();
    let (mut net, ids) = model::<T>(g);
    let frozen: Vec<ParamId> = case["frozen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| ids[n.as_str().unwrap()])
        .collect();
    let x = tensor::<T>(&g["model"]["x"]);
    let y = tensor::<T>(&g["model"]["y"]);
    let mut opt = optimizer::<T>(case["class"].as_str().unwrap(), &case["config"], Vec::new());
    for (step, expected) in case["steps"].as_array().unwrap().iter().enumerate() {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let pred = net.forward(&mut ctx, tape.constant(x.clone()));
        let loss = (pred - tape.constant(y.clone())).square().mean();
        if path == Path::Fused {
            opt.backward_step(&mut net, &ctx, loss).unwrap();
            check_step(name, step, &net, expected, rtol, atol);
            if step == 2 {
                check_state(case, &*opt, &net, rtol, atol);
            }
            continue;
        }
        let all = ctx.param_grads(&loss.backward());
        // A frozen parameter has no gradient, like PyTorch's `grad is None`.
        let mut grads = ParamGrads::default();
        for (pname, id) in &ids {
            if !frozen.contains(id) {
                grads.insert(*id, pname.clone(), all.get_id(*id).unwrap().clone());
            }
        }
        opt.step(&mut net, &grads).unwrap();
        check_step(name, step, &net, expected, rtol, atol);
    }
    check_state(case, &*opt, &net, rtol, atol);
}

/// The optimiser's exported state after the third step against PyTorch's `opt.state`, buffer
/// by buffer: what `save_optimizer` writes means what PyTorch's buffers of those names mean.
fn check_state<T: Element>(
    case: &Value,
    opt: &dyn Optimizer<T>,
    net: &Sequential<T>,
    rtol: f64,
    atol: f64,
) {
    let name = case["name"].as_str().unwrap();
    let state = opt.state_dict(net).unwrap();
    assert_eq!(state.kind, case["class"].as_str().unwrap(), "{name}: kind");
    let (mut buffers, mut steps) = (0, 0);
    for (param, entry) in case["state"].as_object().unwrap() {
        for (buffer, value) in entry.as_object().unwrap() {
            if buffer == "step" {
                // vgrad's RMSprop keeps no step count: its update does not use one.
                if state.kind != "RMSprop" {
                    assert_eq!(
                        state.steps[param],
                        value.as_u64().unwrap(),
                        "{name} {param}"
                    );
                    steps += 1;
                }
                continue;
            }
            let key = format!("{param}.{buffer}");
            let got = state.buffers.get(&key);
            let got = got.unwrap_or_else(|| panic!("{name}: no `{key}` in the state"));
            let what = format!("{name} state {key}");
            assert_close(&what, &to_f64(got), &floats(value), rtol, atol);
            buffers += 1;
        }
    }
    assert_eq!(
        state.buffers.len(),
        buffers,
        "{name}: buffers PyTorch has not"
    );
    assert_eq!(
        state.steps.len(),
        steps,
        "{name}: step counts PyTorch has not"
    );
}

fn check_step<T: Element>(
    name: &str,
    step: usize,
    net: &Sequential<T>,
    expected: &Value,
    rtol: f64,
    atol: f64,
) {
    for (pname, value) in net.state_dict() {
        assert_close(
            &format!("{name} step {} {pname}", step + 1),
            &to_f64(&value),
            &floats(&expected[&pname]),
            rtol,
            atol,
        );
    }
}

#[test]
fn every_optimizer_matches_pytorch_for_three_steps() {
    let g = golden();
    let cases = g["optimizers"].as_array().unwrap();
    assert!(cases.len() >= 15, "all optimiser cases present");
    for case in cases {
        run_case(&g, case, Path::TwoCalls);
    }
}

fn run_case(g: &Value, case: &Value, path: Path) {
    match case["dtype"].as_str().unwrap() {
        "float64" => run_optimizer_case::<f64>(g, case, 1e-10, 1e-12, path),
        "float32" => run_optimizer_case::<f32>(g, case, 2e-5, 1e-6, path),
        other => panic!("dtype {other}"),
    }
}

/// The same cases through `Optimizer::backward_step`, which updates each parameter during the
/// backward sweep (all but the frozen-parameter case, whose gradient the test drops by hand).
#[test]
fn every_optimizer_matches_pytorch_when_stepped_in_backward() {
    let g = golden();
    let cases = g["optimizers"].as_array().unwrap();
    let mut ran = 0;
    for case in cases {
        if case["frozen"].as_array().unwrap().is_empty() {
            run_case(&g, case, Path::Fused);
            ran += 1;
        }
    }
    assert!(ran + 1 >= cases.len(), "only the frozen case is skipped");
}

/// A case's parameter groups as vgrad's [`ParamGroup`]s.
fn groups(case: &Value) -> Vec<ParamGroup> {
    let list = case["groups"].as_array().unwrap();
    list.iter()
        .map(|g| {
            let text = |k: &str| g.get(k).and_then(Value::as_str).map(str::to_string);
            let matches: Box<dyn Fn(&str) -> bool + Send + Sync> =
                match (text("suffix"), text("prefix"), text("name")) {
                    (Some(s), _, _) => Box::new(move |n: &str| n.ends_with(&s)),
                    (_, Some(p), _) => Box::new(move |n: &str| n.starts_with(&p)),
                    (_, _, Some(name)) => Box::new(move |n: &str| n == name),
                    _ => panic!("group without a selector: {g}"),
                };
            let mut group = ParamGroup::matching(matches);
            group = group.lr_scale(g["lr_scale"].as_f64().unwrap());
            if let Some(wd) = g.get("weight_decay").and_then(Value::as_f64) {
                group = group.weight_decay(wd);
            }
            group
        })
        .collect()
}

fn run_group_case<T: Element>(g: &Value, case: &Value, rtol: f64, atol: f64, path: Path) {
    let name = case["name"].as_str().unwrap();
    let (mut net, _) = model::<T>(g);
    let x = tensor::<T>(&g["model"]["x"]);
    let y = tensor::<T>(&g["model"]["y"]);
    let class = case["class"].as_str().unwrap();
    let mut opt = optimizer::<T>(class, &case["config"], groups(case));
    for (step, expected) in case["steps"].as_array().unwrap().iter().enumerate() {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let pred = net.forward(&mut ctx, tape.constant(x.clone()));
        let loss = (pred - tape.constant(y.clone())).square().mean();
        match path {
            Path::Fused => opt.backward_step(&mut net, &ctx, loss).unwrap(),
            Path::TwoCalls => {
                let grads = ctx.param_grads(&loss.backward());
                opt.step(&mut net, &grads).unwrap()
            }
        }
        check_step(name, step, &net, expected, rtol, atol);
    }
}

#[test]
fn parameter_groups_match_pytorch_both_ways() {
    let g = golden();
    let cases = g["groups"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        for path in [Path::TwoCalls, Path::Fused] {
            match case["dtype"].as_str().unwrap() {
                "float64" => run_group_case::<f64>(&g, case, 1e-10, 1e-12, path),
                _ => run_group_case::<f32>(&g, case, 2e-5, 1e-6, path),
            }
        }
    }
}

#[test]
fn frozen_parameter_stays_at_its_initial_value() {
    // The golden case itself shows PyTorch leaving it alone; check it is really unchanged.
    let g = golden();
    let case = g["optimizers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "adam_frozen_bias")
        .unwrap();
    let init = floats(&g["model"]["init"]["0.bias"]["data"]);
    let last = floats(&case["steps"][2]["0.bias"]);
    assert_eq!(init, last);
}

fn schedule(cfg: &Value) -> Box<dyn LrSchedule> {
    let f = |k: &str| cfg[k].as_f64().unwrap();
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    match cfg["kind"].as_str().unwrap() {
        "step" => Box::new(StepLr::new(u("step_size"), f("gamma")).unwrap()),
        "exponential" => Box::new(ExponentialLr::new(f("gamma")).unwrap()),
        "cosine" => Box::new(CosineAnnealingLr::new(u("t_max"), f("eta_min")).unwrap()),
        "warmup" => Box::new(LinearWarmup::new(f("start_factor"), u("warmup_steps")).unwrap()),
        "warmup_cosine" => Box::new(
            SequentialLr::new(
                vec![
                    Box::new(LinearWarmup::new(f("start_factor"), u("warmup_steps")).unwrap()),
                    Box::new(CosineAnnealingLr::new(u("t_max"), f("eta_min")).unwrap()),
                ],
                vec![u("milestone")],
            )
            .unwrap(),
        ),
        // Mirrors the generator's literal three-phase schedule.
        "three_phase" => Box::new(
            SequentialLr::new(
                vec![
                    Box::new(LinearWarmup::new(0.25, 4).unwrap()),
                    Box::new(StepLr::new(5, 0.5).unwrap()),
                    Box::new(ExponentialLr::new(0.95).unwrap()),
                ],
                vec![4, 14],
            )
            .unwrap(),
        ),
        other => panic!("unknown schedule {other}"),
    }
}

#[test]
fn every_schedule_matches_pytorch_for_thirty_steps() {
    let g = golden();
    let schedules = g["schedules"].as_object().unwrap();
    assert_eq!(schedules.len(), 6);
    for (name, s) in schedules {
        let expected = floats(&s["lrs"]);
        let mut opt = Sgd::<f32>::new(SgdConfig {
            lr: 0.1,
            ..Default::default()
        })
        .unwrap();
        let mut sched = LrScheduler::new(schedule(&s["config"]), &mut opt).unwrap();
        let mut actual = vec![opt.lr()];
        for _ in 1..expected.len() {
            actual.push(sched.step(&mut opt).unwrap());
            assert_eq!(opt.lr(), *actual.last().unwrap());
        }
        assert_close(name, &actual, &expected, 1e-12, 0.0);
        // The same rates queried directly, without stepping.
        let direct: Vec<f64> = (0..expected.len()).map(|t| sched.lr(t)).collect();
        assert_close(name, &direct, &expected, 1e-12, 0.0);
    }
}

#[test]
fn reduce_on_plateau_matches_pytorch() {
    let g = golden();
    for (i, case) in g["plateau"].as_array().unwrap().iter().enumerate() {
        let c = &case["config"];
        let f = |k: &str| c[k].as_f64().unwrap();
        let u = |k: &str| c[k].as_u64().unwrap() as usize;
        let cfg = PlateauConfig {
            mode: match c["mode"].as_str().unwrap() {
                "min" => PlateauMode::Min,
                _ => PlateauMode::Max,
            },
            factor: f("factor"),
            patience: u("patience"),
            threshold: f("threshold"),
            threshold_mode: match c["threshold_mode"].as_str().unwrap() {
                "rel" => ThresholdMode::Rel,
                _ => ThresholdMode::Abs,
            },
            cooldown: u("cooldown"),
            min_lr: f("min_lr"),
            eps: f("eps"),
        };
        // Run straight through, and resumed from its saved state before every observation.
        for resumed in [false, true] {
            let mut opt = Sgd::<f64>::new(SgdConfig {
                lr: 0.1,
                ..Default::default()
            })
            .unwrap();
            let mut plateau = ReduceLrOnPlateau::new(opt.lr(), cfg).unwrap();
            // null in the JSON is the NaN metric the generator fed PyTorch.
            let actual: Vec<f64> = floats(&case["metrics"])
                .into_iter()
                .map(|m| {
                    if resumed {
                        plateau = ReduceLrOnPlateau::from_state(cfg, plateau.state()).unwrap();
                    }
                    plateau.step(m, &mut opt).unwrap()
                })
                .collect();
            assert_close(
                &format!("plateau case {i}, resumed {resumed}"),
                &actual,
                &floats(&case["lrs"]),
                1e-12,
                0.0,
            );
        }
    }
}

fn clip_grads<T: Element>(case: &Value) -> (Vec<(String, Param<T>)>, ParamGrads<T>) {
    let mut grads = ParamGrads::default();
    let mut params = Vec::new();
    for (name, s) in case["shapes"].as_object().unwrap() {
        let shape = shape(s);
        let p = Param::new(Tensor::<T>::zeros(&shape));
        let data = floats(&case["grads"][name])
            .into_iter()
            .map(T::of)
            .collect();
        grads.insert(
            p.id(),
            name.clone(),
            Tensor::from_vec(data, &shape).unwrap(),
        );
        params.push((name.clone(), p));
    }
    (params, grads)
}

fn run_clip_case<T: Element>(case: &Value, rtol: f64) {
    for c in case["norm"].as_array().unwrap() {
        let max_norm = c["max_norm"].as_f64().unwrap();
        let (params, mut grads) = clip_grads::<T>(case);
        let total = clip_grad_norm(&mut grads, max_norm);
        let what = format!("{} clip_grad_norm({max_norm})", T::DTYPE);
        assert_close(&what, &[total], &[c["total"].as_f64().unwrap()], rtol, 0.0);
        for (name, p) in &params {
            let expected = floats(&c["grads"][name]);
            let actual = to_f64(grads.get(p).unwrap());
            assert_close(&format!("{what} {name}"), &actual, &expected, rtol, 1e-12);
        }
    }
    for c in case["value"].as_array().unwrap() {
        let clip = c["clip"].as_f64().unwrap();
        let (params, mut grads) = clip_grads::<T>(case);
        clip_grad_value(&mut grads, clip);
        for (name, p) in &params {
            // Clamping is exact; the 1e-15 only absorbs serde_json's float parsing, which
            // (without its `float_roundtrip` feature) can be one f64 ulp off.
            assert_close(
                &format!("{} clip_grad_value({clip}) {name}", T::DTYPE),
                &to_f64(grads.get(p).unwrap()),
                &floats(&c["grads"][name]),
                1e-15,
                0.0,
            );
        }
    }
}

#[test]
fn clipping_matches_pytorch() {
    let g = golden();
    for case in g["clip"].as_array().unwrap() {
        match case["dtype"].as_str().unwrap() {
            "float64" => run_clip_case::<f64>(case, 1e-12),
            // PyTorch sums the f32 norm in f32, vgrad in f64: agreement to f32 rounding.
            _ => run_clip_case::<f32>(case, 1e-6),
        }
    }
}

/// The largest relative difference `|a − e|/|e|` (absolute where `e` is 0), for the figures
/// the tests print.
fn worst_rel(actual: &[f64], expected: &[f64]) -> f64 {
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| {
            let d = (a - e).abs();
            if *e == 0.0 {
                d
            } else {
                d / e.abs()
            }
        })
        .fold(0.0, f64::max)
}

/// The golden model's parameters flattened in `state_dict` order, and PyTorch's at one step.
fn params_vs<T: Element>(net: &Sequential<T>, expected: &Value) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut e) = (Vec::new(), Vec::new());
    for (pname, value) in net.state_dict() {
        a.extend(to_f64(&value));
        e.extend(floats(&expected[&pname]));
    }
    (a, e)
}

/// One training step of the golden problem, through `step` or `backward_step`.
fn train_step<T: Element>(
    net: &mut Sequential<T>,
    opt: &mut dyn Optimizer<T>,
    g: &Value,
    path: Path,
) {
    let x = tensor::<T>(&g["model"]["x"]);
    let y = tensor::<T>(&g["model"]["y"]);
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let pred = net.forward(&mut ctx, tape.constant(x));
    let loss = (pred - tape.constant(y)).square().mean();
    match path {
        Path::Fused => opt.backward_step(net, &ctx, loss).unwrap(),
        Path::TwoCalls => {
            let grads = ctx.param_grads(&loss.backward());
            opt.step(net, &grads).unwrap()
        }
    }
}

/// The biases in a group with their own rate, as the generator's `bias_groups`.
fn bias_group(lr: f64) -> Vec<ParamGroup> {
    vec![ParamGroup::matching(|n| n.ends_with("bias")).lr(lr)]
}

/// Issue 16, item 14: parameter groups with their own learning rate under a schedule with a
/// floor (warm-up then cosine to `eta_min`) get PyTorch's rates, each group from its own base
/// to the same floor, and the parameters follow PyTorch's for every update. Each case also
/// resumes from a saved state (optimiser `state_dict` and the scheduler's base rates and
/// epoch) half-way through and must continue bit for bit.
#[test]
fn parameter_groups_with_their_own_rates_follow_pytorch_schedules() {
    let g = golden();
    let cases = g["group_schedules"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        match case["dtype"].as_str().unwrap() {
            "float64" => run_group_schedule::<f64>(&g, case, 1e-10, 1e-12),
            _ => run_group_schedule::<f32>(&g, case, 2e-5, 1e-6),
        }
    }
}

fn run_group_schedule<T: Element>(g: &Value, case: &Value, rtol: f64, atol: f64) {
    let name = case["name"].as_str().unwrap();
    let class = case["class"].as_str().unwrap();
    let bias_lr = case["bias_lr"].as_f64().unwrap();
    let steps = case["steps"].as_array().unwrap();
    let (mut worst_lr, mut worst_param) = (0.0f64, 0.0f64);
    for path in [Path::TwoCalls, Path::Fused] {
        let (mut net, _) = model::<T>(g);
        let mut opt = optimizer::<T>(class, &case["config"], bias_group(bias_lr));
        let mut sched = LrScheduler::new(schedule(&case["schedule"]), &mut *opt).unwrap();
        let mut saved = None;
        for (i, expected) in steps.iter().enumerate() {
            let what = format!("{name} {:?} update {}", path as u8, i + 1);
            let lrs = opt.group_lrs();
            assert_close(
                &format!("{what} lrs"),
                &lrs,
                &floats(&expected["lrs"]),
                1e-12,
                0.0,
            );
            worst_lr = worst_lr.max(worst_rel(&lrs, &floats(&expected["lrs"])));
            train_step(&mut net, &mut *opt, g, path);
            sched.step(&mut *opt).unwrap();
            let (a, e) = params_vs(&net, &expected["params"]);
            assert_close(&format!("{what} params"), &a, &e, rtol, atol);
            worst_param = worst_param.max(worst_rel(&a, &e));
            if i == steps.len() / 2 {
                let state = opt.state_dict(&net).unwrap();
                saved = Some((
                    net.state_dict(),
                    state,
                    sched.base_lrs().to_vec(),
                    sched.epoch(),
                ));
            }
        }
        // Resume from the state saved after update n/2 + 1: a fresh optimiser built with the
        // same groups (at its construction rates), the scheduler rebuilt from its base rates.
        let (weights, state, base_lrs, epoch) = saved.unwrap();
        let w = |n: &str| weights.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let layer = |i: usize| {
            let (wt, b) = (w(&format!("{i}.weight")), w(&format!("{i}.bias")));
            Linear::from_tensors(wt, Some(b)).unwrap()
        };
        let mut net2 = Sequential::new()
            .push(layer(0))
            .push(Activation::Tanh)
            .push(layer(2));
        let mut opt2 = optimizer::<T>(class, &case["config"], bias_group(bias_lr));
        opt2.load_state_dict(&net2, &state).unwrap();
        let mut sched2 = LrScheduler::with_base_lrs(schedule(&case["schedule"]), base_lrs).unwrap();
        sched2.set_epoch(epoch);
        for expected in &steps[steps.len() / 2 + 1..] {
            assert_close(
                &format!("{name} resumed lrs"),
                &opt2.group_lrs(),
                &floats(&expected["lrs"]),
                1e-12,
                0.0,
            );
            train_step(&mut net2, &mut *opt2, g, path);
            sched2.step(&mut *opt2).unwrap();
        }
        let bits = |m: &Sequential<T>| -> Vec<u64> {
            m.state_dict()
                .iter()
                .flat_map(|(_, t)| to_f64(t))
                .map(f64::to_bits)
                .collect()
        };
        assert_eq!(bits(&net2), bits(&net), "{name}: resumed run differs");
    }
    eprintln!("{name}: worst lr rel err {worst_lr:.2e}, worst param rel err {worst_param:.2e}");
}

/// ReduceLROnPlateau over two parameter groups (SGD with momentum, the biases in a group with
/// their own rate): each group's rate is reduced on its own and floored at its own `min_lr`
/// (a list, or one number for both), as PyTorch's; straight through and resumed from its
/// state before every observation.
#[test]
fn reduce_on_plateau_with_groups_matches_pytorch() {
    let g = golden();
    let cases = g["group_plateau"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let c = &case["config"];
        let cfg = PlateauConfig {
            mode: PlateauMode::Min,
            factor: c["factor"].as_f64().unwrap(),
            patience: c["patience"].as_u64().unwrap() as usize,
            threshold: c["threshold"].as_f64().unwrap(),
            threshold_mode: ThresholdMode::Rel,
            cooldown: c["cooldown"].as_u64().unwrap() as usize,
            min_lr: c["min_lr"].as_f64().unwrap_or(0.0),
            eps: 1e-8,
        };
        let sgd = serde_json::json!({"lr": 0.1, "momentum": 0.9});
        let bias_lr = case["bias_lr"].as_f64().unwrap();
        let (mut worst_lr, mut worst_param) = (0.0f64, 0.0f64);
        for resumed in [false, true] {
            let (mut net, _) = model::<f64>(&g);
            let mut opt = optimizer::<f64>("SGD", &sgd, bias_group(bias_lr));
            let mut plateau = ReduceLrOnPlateau::for_optimizer(&*opt, cfg).unwrap();
            if c["min_lr"].is_array() {
                plateau = plateau.with_min_lrs(floats(&c["min_lr"])).unwrap();
            }
            let metrics = floats(&case["metrics"]);
            for (i, (m, expected)) in metrics
                .iter()
                .zip(case["steps"].as_array().unwrap())
                .enumerate()
            {
                if resumed {
                    plateau = ReduceLrOnPlateau::from_state(cfg, plateau.state()).unwrap();
                }
                train_step(&mut net, &mut *opt, &g, Path::TwoCalls);
                plateau.step(*m, &mut *opt).unwrap();
                let what = format!("{name} resumed {resumed} observation {}", i + 1);
                let lrs = opt.group_lrs();
                assert_close(&what, &lrs, &floats(&expected["lrs"]), 1e-12, 0.0);
                assert_eq!(plateau.lrs(), &lrs[..]);
                worst_lr = worst_lr.max(worst_rel(&lrs, &floats(&expected["lrs"])));
                let (a, e) = params_vs(&net, &expected["params"]);
                assert_close(&format!("{what} params"), &a, &e, 1e-10, 1e-12);
                worst_param = worst_param.max(worst_rel(&a, &e));
            }
        }
        eprintln!("{name}: worst lr rel err {worst_lr:.2e}, worst param rel err {worst_param:.2e}");
    }
}

/// Issue 16, item 15: `clip_grad_norm_p` against `clip_grad_norm_(…, norm_type)` for p in
/// {1, 2, 3, 0.5, ∞}, above and below the threshold: the returned total and the gradients.
#[test]
fn clipping_with_every_norm_type_matches_pytorch() {
    let g = golden();
    let mut tried = 0;
    for case in g["clip_norm_types"].as_array().unwrap() {
        let f32_case = case["dtype"] == "float32";
        let (mut worst_total, mut worst_grad) = (0.0f64, 0.0f64);
        for c in case["cases"].as_array().unwrap() {
            let p = match &c["norm_type"] {
                Value::String(s) if s == "inf" => f64::INFINITY,
                v => v.as_f64().unwrap(),
            };
            let max_norm = c["max_norm"].as_f64().unwrap();
            let expected_total = c["total"].as_f64().unwrap();
            let what = format!("{} clip_grad_norm_p({max_norm}, {p})", case["dtype"]);
            let (total, grads) = if f32_case {
                clip_p::<f32>(case, max_norm, p)
            } else {
                clip_p::<f64>(case, max_norm, p)
            };
            // PyTorch sums f32 norms in f32, vgrad in f64: agreement to f32 rounding there.
            let rtol = if f32_case { 2e-6 } else { 1e-13 };
            assert_close(&what, &[total], &[expected_total], rtol, 0.0);
            worst_total = worst_total.max(worst_rel(&[total], &[expected_total]));
            for (name, before, actual) in &grads {
                if total < max_norm {
                    // Below the threshold nothing changes, to the bit.
                    assert_eq!(actual, before, "{what} {name}");
                }
                let expected = floats(&c["grads"][name]);
                assert_close(&format!("{what} {name}"), actual, &expected, rtol, 1e-12);
                worst_grad = worst_grad.max(worst_rel(actual, &expected));
            }
            tried += 1;
        }
        eprintln!(
            "{}: worst total rel err {worst_total:.2e}, worst gradient rel err {worst_grad:.2e}",
            case["dtype"]
        );
    }
    assert_eq!(tried, 20);
}

/// A gradient's name, its values before clipping and after.
type Clipped = (String, Vec<f64>, Vec<f64>);

/// `clip_grad_norm_p` on a case's gradients in `T`: the total, and each gradient's name,
/// values before and values after.
fn clip_p<T: Element>(case: &Value, max_norm: f64, p: f64) -> (f64, Vec<Clipped>) {
    let (params, mut grads) = clip_grads::<T>(case);
    let before: Vec<Vec<f64>> = params
        .iter()
        .map(|(_, p)| to_f64(grads.get(p).unwrap()))
        .collect();
    let total = clip_grad_norm_p(&mut grads, max_norm, p);
    let out = params
        .iter()
        .zip(before)
        .map(|((n, p), b)| (n.clone(), b, to_f64(grads.get(p).unwrap())))
        .collect();
    (total, out)
}
