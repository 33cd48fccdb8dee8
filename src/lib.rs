//! ctrack: Linux conntrack's model as an embeddable userspace library.

pub mod packet;
pub mod tuple;

pub use packet::LinkType;
