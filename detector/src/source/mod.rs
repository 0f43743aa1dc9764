//! Where events come from; each source hands documents to the decoder.

pub mod file;
pub mod gunzip;
pub mod kafka;
pub mod s3;
pub mod select;
pub mod split;
pub mod sqs;
pub mod walk;
