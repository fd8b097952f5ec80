//! A checkpoint written by PyTorch from a module with its own attribute names (issue 19, item
//! 5): `nn.Sequential(Linear, ResBlock(l1, bn, l2), Linear)`, keys `1.l1.weight`,
//! `1.bn.running_mean`, …. Provenance: `tests/golden/named_gen.py` (torch 2.15) wrote
//! `named.safetensors` and `named.json` (an input and the model's eval-mode output).
//!
//! vgrad loads it two ways: a custom module with the same field names (the `children!` macro),
//! whose names match without help, and vgrad's own `Residual` around a `Sequential`, whose
//! names (`1.branch.0.weight`) are mapped to PyTorch's with a rename table. Both reproduce
//! PyTorch's output; the mapped model saves back under PyTorch's names.

// Checkpoints need the `safetensors` feature (on by default).
#![cfg(feature = "safetensors")]

use serde_json::Value;
use vgrad::nn::rename_keys;
use vgrad::nn::{
    load_safetensors, load_safetensors_with, save_safetensors_bytes_with, Activation, BatchNorm1d,
    Ctx, Linear, Module, Residual, Sequential,
};
use vgrad::{seeded_rng, Element, Tape, Tensor, Var};

#[path = "common/golden.rs"]
mod golden;
use golden::tensor;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

#[derive(Clone, Debug)]
struct ResBlock<T: Element> {
    l1: Linear<T>,
    bn: BatchNorm1d<T>,
    l2: Linear<T>,
}

impl<T: Element> Module<T> for ResBlock<T> {
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let h = ctx.child("l1", &mut self.l1, x).relu();
        let h = ctx.child("bn", &mut self.bn, h);
        x + ctx.child("l2", &mut self.l2, h)
    }
    vgrad::children!(T; l1, bn, l2);
}

fn golden() -> (Tensor<f64>, Tensor<f64>) {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{GOLDEN}/named.json")).unwrap())
            .unwrap();
    (tensor(&v["x"]), tensor(&v["y"]))
}

fn eval_output(model: &mut dyn Module<f64>, x: &Tensor<f64>) -> Tensor<f64> {
    model.eval();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    model.forward(&mut ctx, tape.constant(x.clone())).value()
}

fn assert_close(got: &Tensor<f64>, want: &Tensor<f64>) {
    assert_eq!(got.shape(), want.shape());
    for (a, b) in got.data().iter().zip(want.data()) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn a_custom_module_with_pytorchs_field_names_loads_without_a_map() {
    let mut rng = seeded_rng(0);
    let mut model = Sequential::<f64>::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(ResBlock {
            l1: Linear::new(4, 4, &mut rng).unwrap(),
            bn: BatchNorm1d::new(4).unwrap(),
            l2: Linear::new(4, 4, &mut rng).unwrap(),
        })
        .push(Linear::new(4, 2, &mut rng).unwrap());
    load_safetensors(&mut model, format!("{GOLDEN}/named.safetensors")).unwrap();
    let (x, y) = golden();
    assert_close(&eval_output(&mut model, &x), &y);
}

#[test]
fn vgrads_residual_loads_pytorchs_names_through_a_rename_table() {
    let mut rng = seeded_rng(1);
    let branch = Sequential::new()
        .push(Linear::new(4, 4, &mut rng).unwrap())
        .push(Activation::Relu)
        .push(BatchNorm1d::new(4).unwrap())
        .push(Linear::new(4, 4, &mut rng).unwrap());
    let mut model = Sequential::<f64>::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(Residual::new(branch))
        .push(Linear::new(4, 2, &mut rng).unwrap());
    let table = [
        ("1.branch.0.", "1.l1."),
        ("1.branch.2.", "1.bn."),
        ("1.branch.3.", "1.l2."),
    ];
    let path = format!("{GOLDEN}/named.safetensors");
    // Without the map the names do not match, and nothing is loaded.
    let before = model.state_dict();
    let err = load_safetensors(&mut model, &path).unwrap_err();
    assert!(err.to_string().contains("1.branch.0.weight"), "{err}");
    assert_eq!(model.state_dict().len(), before.len());
    load_safetensors_with(&mut model, &path, rename_keys(&table)).unwrap();
    let (x, y) = golden();
    assert_close(&eval_output(&mut model, &x), &y);
    // Saved back under PyTorch's names: the same keys PyTorch wrote.
    let bytes = save_safetensors_bytes_with(&model, rename_keys(&table)).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let mut keys: Vec<&str> = header
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .filter(|k| *k != "__metadata__")
        .collect();
    keys.sort_unstable();
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{GOLDEN}/named.json")).unwrap())
            .unwrap();
    let want: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, want);
    // A map that sends two names to one key is refused.
    let clash = |n: &str| {
        if n.ends_with("bias") {
            "b".to_string()
        } else {
            n.to_string()
        }
    };
    assert!(save_safetensors_bytes_with(&model, clash).is_err());
    assert!(load_safetensors_with(&mut model, &path, clash).is_err());
}
