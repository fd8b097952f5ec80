//! Readers for the JSON fixtures in `tests/golden/` that PyTorch scripts write: numbers (with
//! NaN and the infinities as strings, which JSON lacks) and `{"shape": […], "data": […]}` tensors.
//! Included by the golden tests with `#[path = "common/golden.rs"] mod golden;`.

use serde_json::Value;
use vgrad::Tensor;

/// A fixture number; JSON has no NaN or infinities, so the generators write those as strings.
pub fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("unexpected number string {other:?}"),
        },
        _ => v.as_f64().expect("number"),
    }
}

/// A fixture tensor: `{"shape": [...], "data": [...]}`, data row-major.
pub fn tensor(v: &Value) -> Tensor<f64> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("extent") as usize)
        .collect();
    let data: Vec<f64> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(number)
        .collect();
    Tensor::from_vec(data, &shape).expect("consistent shape and data")
}
