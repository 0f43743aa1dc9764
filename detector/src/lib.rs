//! trailwatch: real-time Sigma detection over AWS CloudTrail.

pub mod event;
pub mod rule;
