//! Models cross threads and copy (issue 19): every model, layer, optimiser, schedule, tensor
//! and parameter is `Send` (and `Sync` where it holds only data), training in spawned threads
//! matches the same run on the main thread to the bit, and a cloned model is an independent
//! deep copy.

use vgrad::nn::{
    Activation, Adam, AdamConfig, BatchNorm1d, CosineAnnealingLr, Ctx, Dropout, LayerNorm, Linear,
    LrScheduler, Module, Optimizer, Param, ParamGrads, ReduceLrOnPlateau, Residual, Sequential,
    Sgd, SgdConfig,
};
use vgrad::{seeded_rng, Tape, Tensor};

fn send_sync<X: Send + Sync>() {}
fn send<X: Send>() {}

/// Compile-time: the list the issue names. A type that stops being `Send`/`Sync` fails to build.
#[test]
fn models_optimisers_schedules_and_tensors_are_send_and_sync() {
    send_sync::<Tensor<f32>>();
    send_sync::<Param<f64>>();
    send_sync::<ParamGrads<f32>>();
    send_sync::<Sequential<f32>>();
    send_sync::<Linear<f64>>();
    send_sync::<BatchNorm1d<f32>>();
    send_sync::<LayerNorm<f32>>();
    send_sync::<Residual<f32>>();
    send_sync::<Dropout>();
    send_sync::<Activation<f32>>();
    send_sync::<Box<dyn Module<f32>>>();
    send_sync::<Sgd<f32>>();
    send_sync::<Adam<f64>>();
    send::<Box<dyn Optimizer<f32>>>();
    send_sync::<LrScheduler<CosineAnnealingLr>>();
    send_sync::<ReduceLrOnPlateau>();
    send_sync::<vgrad::monitor::GradMonitor<f32>>();
}

fn model(seed: u64) -> Sequential<f32> {
    let mut rng = seeded_rng(seed);
    let block = Sequential::new()
        .push(Linear::new(8, 8, &mut rng).unwrap())
        .push(Activation::Relu)
        .push(BatchNorm1d::new(8).unwrap());
    Sequential::new()
        .push(Linear::new(4, 8, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Residual::new(block))
        .push(Dropout::new(0.2, seed).unwrap())
        .push(Linear::new(8, 3, &mut rng).unwrap())
}

/// Trains `net` for a few steps with Adam; returns the losses.
fn train(net: &mut Sequential<f32>, fused: bool) -> Vec<f32> {
    let x = Tensor::from_fn(&[16, 4], |i| ((i * 7919) % 101) as f32 / 50.0 - 1.0);
    let y = Tensor::from_fn(&[16, 3], |i| ((i * 104_729) % 13) as f32 / 6.0 - 1.0);
    let mut opt = Adam::new(AdamConfig {
        lr: 0.01,
        ..Default::default()
    })
    .unwrap();
    let mut losses = Vec::new();
    for _ in 0..10 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let pred = net.forward(&mut ctx, tape.constant(x.clone()));
        let loss = (pred - tape.constant(y.clone())).square().mean();
        losses.push(loss.value().item());
        if fused {
            opt.backward_step(net, &ctx, loss).unwrap();
        } else {
            let grads = ctx.param_grads(&loss.backward());
            opt.step(net, &grads).unwrap();
        }
    }
    losses
}

fn weights(net: &Sequential<f32>) -> Vec<(String, Vec<f32>)> {
    net.state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec()))
        .collect()
}

/// A model per thread trains to the bit the same as on the main thread.
#[test]
fn training_in_spawned_threads_matches_the_main_thread() {
    let reference: Vec<_> = (0..3)
        .map(|seed| {
            let mut net = model(seed);
            let losses = train(&mut net, seed % 2 == 0);
            (losses, weights(&net))
        })
        .collect();
    let handles: Vec<_> = (0..3)
        .map(|seed| {
            // The model is built here and moved into the thread.
            let mut net = model(seed);
            std::thread::spawn(move || {
                let losses = train(&mut net, seed % 2 == 0);
                (losses, weights(&net))
            })
        })
        .collect();
    for (seed, h) in handles.into_iter().enumerate() {
        let got = h.join().expect("the thread trained");
        assert_eq!(got, reference[seed], "seed {seed}: bit-identical");
    }
}

/// A model behind a mutex, shared by threads that run it (a server's handlers).
#[test]
fn a_shared_model_serves_several_threads() {
    let net = std::sync::Arc::new(std::sync::Mutex::new(model(5)));
    net.lock().unwrap().eval();
    let x = Tensor::from_fn(&[2, 4], |i| i as f32 * 0.1);
    let want = {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let y = net
            .lock()
            .unwrap()
            .forward(&mut ctx, tape.constant(x.clone()));
        y.value().to_vec()
    };
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (net, x) = (net.clone(), x.clone());
            std::thread::spawn(move || {
                let tape = Tape::new();
                tape.set_grad_enabled(false);
                let mut ctx = Ctx::new(&tape);
                let y = net.lock().unwrap().forward(&mut ctx, tape.constant(x));
                y.value().to_vec()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
}

/// `clone` is a deep copy: fresh parameter ids, equal values, and training one leaves the other
/// untouched; the copy then trains exactly as the original did (Dropout's stream included).
#[test]
fn a_cloned_model_is_an_independent_deep_copy() {
    let mut original = model(7);
    let mut copy = original.clone();
    assert_eq!(weights(&copy), weights(&original));
    let ids = |net: &Sequential<f32>| {
        let mut v = Vec::new();
        net.visit(&mut IdVisitor(&mut v));
        v
    };
    let (a, b) = (ids(&original), ids(&copy));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().all(|id| !b.contains(id)), "fresh ParamIds");

    let before = weights(&copy);
    let losses = train(&mut original, true);
    assert_eq!(
        weights(&copy),
        before,
        "training the original left the copy alone"
    );
    let copy_losses = train(&mut copy, true);
    assert_eq!(
        copy_losses, losses,
        "the copy trains the same, dropout masks included"
    );
    assert_eq!(weights(&copy), weights(&original));
}

struct IdVisitor<'a>(&'a mut Vec<vgrad::nn::ParamId>);
impl vgrad::nn::Visitor<f32> for IdVisitor<'_> {
    fn param(&mut self, _name: &str, p: &Param<f32>) {
        self.0.push(p.id());
    }
}

/// A cloned `Dropout` draws the masks the original draws from the same point; and the stream is
/// the one `StdRng` seeded the same way gives (the layer's masks did not change with its
/// generator's type).
#[test]
fn dropout_clones_continue_the_same_stream() {
    let mut d = Dropout::new(0.5, 42).unwrap();
    let x = Tensor::<f64>::ones(&[64]);
    let run = |d: &mut Dropout| {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        d.forward(&mut ctx, tape.constant(x.clone()))
            .value()
            .to_vec()
    };
    let _ = run(&mut d);
    let mut c = d.clone();
    for _ in 0..3 {
        assert_eq!(run(&mut c), run(&mut d));
    }
    use vgrad::rand::{rngs::ChaCha12Rng, rngs::StdRng, Rng, SeedableRng};
    let (mut s, mut c) = (StdRng::seed_from_u64(9), ChaCha12Rng::seed_from_u64(9));
    for _ in 0..100 {
        assert_eq!(s.next_u64(), c.next_u64());
    }
}

/// `Sequential::get` hands a child back as its type.
#[test]
fn sequential_children_come_back_by_index_and_type() {
    let mut net = model(1);
    assert_eq!(net.get::<Linear<f32>>(0).unwrap().in_features(), 4);
    assert!(net.get::<Linear<f32>>(1).is_none());
    assert!(net.get::<Residual<f32>>(2).is_some());
    assert!(net.get::<Linear<f32>>(99).is_none());
    let last: &mut Linear<f32> = net.get_mut(4).unwrap();
    last.weight_mut().set(Tensor::zeros(&[3, 8]));
    assert!(net
        .get::<Linear<f32>>(4)
        .unwrap()
        .weight()
        .value()
        .data()
        .iter()
        .all(|&v| v == 0.0));
}

/// The optimiser's step leaves a clone that shares nothing: the update is never seen through
/// the other copy even when the step runs in place.
#[test]
fn in_place_updates_never_reach_a_clone() {
    let mut net = Sequential::<f64>::new().push(Linear::new(3, 2, &mut seeded_rng(3)).unwrap());
    let copy = net.clone();
    let before = weights_f64(&copy);
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.5,
        ..Default::default()
    })
    .unwrap();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let loss = net
        .forward(&mut ctx, tape.constant(Tensor::ones(&[2, 3])))
        .sum();
    opt.backward_step(&mut net, &ctx, loss).unwrap();
    assert_ne!(weights_f64(&net), before);
    assert_eq!(weights_f64(&copy), before);
}

fn weights_f64(net: &Sequential<f64>) -> Vec<Vec<f64>> {
    net.state_dict()
        .into_iter()
        .map(|(_, t)| t.to_vec())
        .collect()
}
