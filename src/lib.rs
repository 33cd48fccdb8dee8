//! ctrack: Linux conntrack's model as an embeddable userspace library.
//!
//! A [`Conntrack`] decides, for every packet, whether it is NEW, ESTABLISHED, RELATED or
//! INVALID, as the Linux kernel's connection tracker would; it keeps a bidirectional table of
//! connections with per-protocol trackers (from [`ctrack_protocols`]), timeouts like the
//! kernel's sysctls, and early drop of non-ASSURED entries when full. Time is always the
//! caller's: every call takes a monotonic nanosecond clock value. With
//! [`Config::events`], it also reports what happens to its entries as the kernel reports it
//! to `conntrack -E` ([`Conntrack::events`]). Between packets, [`Conntrack::get`],
//! [`Conntrack::remove`], [`Conntrack::retain`] and [`Conntrack::flush`] read and edit the
//! table as the `conntrack` tool's `-G`, `-D` and `-F` do, and [`Conntrack::set_sysctl`]
//! changes a sysctl as `sysctl -w` does. [`Conntrack::in_zone`] tracks packets in a conntrack
//! zone, a table of their own within the table, and [`Conntrack::set_mark`] sets a
//! connection's mark as a ruleset's `ct mark set` does.
//!
//! ```
//! use ctrack::{Conntrack, Config, LinkType, State};
//! let mut cfg = Config::default();
//! cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
//! let ct = Conntrack::new(cfg);
//! // An ICMP echo request, then its reply, as raw IPv4.
//! let ping = |src: [u8; 4], dst: [u8; 4], ty: u8| {
//!     let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0];
//!     p.extend_from_slice(&src);
//!     p.extend_from_slice(&dst);
//!     p.extend_from_slice(&[ty, 0, 0, 0, 0, 7, 0, 1]);
//!     let c = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &p[..20]));
//!     p[10..12].copy_from_slice(&c.to_be_bytes());
//!     p
//! };
//! let a = ct.process(&ping([10, 0, 0, 1], [10, 0, 0, 2], 8), LinkType::Raw, 0);
//! let b = ct.process(&ping([10, 0, 0, 2], [10, 0, 0, 1], 0), LinkType::Raw, 1_000);
//! assert_eq!(a.to_string(), "new,orig");
//! assert_eq!(b.to_string(), "established,reply");
//! assert_eq!(b.state, State::Established);
//! ```

#![warn(missing_docs)]

mod batch;
pub mod capture;
mod checksum;
pub mod conntrack;
pub mod defrag;
pub mod event;
mod expect;
pub mod format;
pub mod host;
pub mod icmp_error;
pub mod packet;
mod policy;
pub mod ratelimit;
pub mod stats;
mod store;
pub mod table;
pub mod timer;
pub mod tuple;
pub mod verdict;
pub mod workload;
mod zone;

pub use conntrack::{Config, Conntrack, MAX_SHARDS};
pub use ctrack_protocols::sysctl::SysctlError;
pub use ctrack_protocols::{Dir, NANOS_PER_SEC, Nanos};
pub use event::{Event, EventKind, ExpectEvent};
pub use format::{EntryView, ExpectView};
pub use host::HostModel;
pub use packet::LinkType;
pub use policy::{MAX_TIMEOUT_RULES, TimeoutRule, TimeoutRuleError};
pub use stats::Snapshot;
pub use tuple::{L4, Tuple};
pub use verdict::{State, Verdict};
pub use zone::InZone;
