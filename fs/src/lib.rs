//! rimg's filesystem library.
//!
//! The pipeline, bottom up: [`digest`] names content; [`store`] keeps an OCI image layout
//! with uncompressed layer tars; [`tar_stream`] and [`layer_index`] index each tar once as it
//! enters the store; [`whiteout`] says what OCI whiteout names mean; [`union`] merges an image's
//! layer indexes into one tree; [`fuse`] serves that tree read-only from [`mapped`] layer
//! tars; [`overlay`] stacks the copy-on-write upper (kernel overlayfs) on top; [`upper`] reads
//! a container's upper dir as changes and writes it as a layer; [`changes`] holds the change
//! lists, and the one between two images; [`path`] cleans paths relative to a root. [`error`]
//! holds the error context they share ([`error::IoError`]) and the convention for wrapped causes.

pub mod changes;
pub mod digest;
pub mod error;
pub mod fuse;
pub mod layer_index;
pub mod mapped;
pub mod mountinfo;
pub mod overlay;
pub mod path;
pub mod store;
pub mod tar_stream;
pub mod tar_write;
pub mod union;
pub mod upper;
pub mod whiteout;

pub use digest::Digest;
pub use layer_index::{Entry, EntryKind, LayerIndex};
pub use store::{ContentStore, StoreError};
