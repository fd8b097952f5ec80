//! The few TensorFlow protobuf messages an event file needs, declared by hand from
//! `tensorflow/core/util/event.proto` and `tensorflow/core/framework/summary.proto` (field
//! numbers and types as there; fields vgrad never writes left out, which protobuf allows).
//! prost's derive encodes them, so no `.proto` file, `protoc` or build script is involved.

/// `tensorflow.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The training step the summary belongs to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// `Event.what`, the two members vgrad writes.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum What {
    /// `"brain.Event:2"`, the first record of every file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Values at one step.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a tag and one value.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(oneof = "ValueKind", tags = "2, 5")]
    pub value: Option<ValueKind>,
}

/// `Summary.Value.value`: the two kinds vgrad writes, as PyTorch's `SummaryWriter` writes them
/// by default (a scalar as `simple_value`, not as a tensor with plugin metadata; TensorBoard
/// files both under its scalars and histograms plugins by their kind).
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum ValueKind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "5")]
    Histo(HistogramProto),
}

/// `tensorflow.HistogramProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HistogramProto {
    #[prost(double, tag = "1")]
    pub min: f64,
    #[prost(double, tag = "2")]
    pub max: f64,
    #[prost(double, tag = "3")]
    pub num: f64,
    #[prost(double, tag = "4")]
    pub sum: f64,
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    #[prost(double, repeated, packed = "true", tag = "6")]
    pub bucket_limit: Vec<f64>,
    #[prost(double, repeated, packed = "true", tag = "7")]
    pub bucket: Vec<f64>,
}
