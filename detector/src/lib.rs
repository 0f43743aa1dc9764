//! trailwatch: real-time Sigma detection over AWS CloudTrail.
//!
//! Data flows one way: a [`source`] yields documents, [`event`] decodes them into records,
//! [`engine`] evaluates compiled [`rule`]s, and matches become [`alert`]s. [`replay`] runs
//! that flow over history.

pub mod alert;
pub mod config;
pub mod diff;
pub mod durable;
pub mod engine;
pub mod escape;
pub mod event;
pub mod fixture;
pub mod geo;
pub mod keyed;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod report;
pub mod rule;
pub mod run;
pub mod sink;
pub mod source;
pub mod window;
