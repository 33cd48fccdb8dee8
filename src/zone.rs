//! The tracker seen from one conntrack zone ([`Conntrack::in_zone`]).

use std::fmt;

use crate::conntrack::Conntrack;
use crate::packet::LinkType;
use crate::verdict::Verdict;
use ctrack_protocols::Nanos;

/// A [`Conntrack`] seen from one conntrack zone: its calls track packets in that zone (see
/// [`Conntrack::in_zone`] for what a zone keeps apart). Cheap to make and to copy: make one
/// per burst, or keep one per zone.
///
/// ```
/// use ctrack::{Config, Conntrack, LinkType};
/// let ct = Conntrack::new(Config::default());
/// let guest = ct.in_zone(2);
/// assert_eq!(guest.zone(), 2);
/// let mut out = Vec::new();
/// guest.process_batch(&[&[0u8; 14][..], &[0x45u8; 3][..]], LinkType::Ethernet, 0, &mut out);
/// assert_eq!(out.len(), 2);
/// ```
#[derive(Clone, Copy)]
pub struct InZone<'a> {
    pub(crate) ct: &'a Conntrack,
    pub(crate) zone: u16,
}

impl fmt::Debug for InZone<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InZone").field("zone", &self.zone).finish()
    }
}

impl InZone<'_> {
    /// The zone.
    pub fn zone(&self) -> u16 {
        self.zone
    }

    /// [`Conntrack::process`] in this zone.
    pub fn process(&self, frame: &[u8], link: LinkType, now: Nanos) -> Verdict {
        if self.zone == 0 {
            self.ct.process(frame, link, now)
        } else {
            self.ct.process_zoned(frame, link, self.zone, now)
        }
    }

    /// [`Conntrack::process_ip`] in this zone.
    pub fn process_ip(&self, ip: &[u8], now: Nanos) -> Verdict {
        self.ct.packet_begins();
        self.ct.process_ip_zoned(ip, self.zone, now)
    }

    /// [`Conntrack::tuple_of`] in this zone: the tuple by which `frame`, tracked in this
    /// zone, finds its connection.
    pub fn tuple_of(&self, frame: &[u8], link: LinkType) -> Option<crate::Tuple> {
        self.ct.tuple_in_zone(frame, link, self.zone)
    }

    /// [`Conntrack::process_batch`] in this zone (sorted by shard, with its entries fetched
    /// ahead, over a large table): the same verdicts as [`InZone::process`] frame by frame.
    pub fn process_batch(
        &self,
        frames: &[&[u8]],
        link: LinkType,
        now: Nanos,
        out: &mut Vec<Verdict>,
    ) {
        if self.zone == 0 {
            self.ct.process_batch(frames, link, now, out);
        } else {
            self.ct
                .process_batch_zoned(frames, link, self.zone, now, out);
        }
    }

    /// [`Conntrack::queue_of`] for packets tracked in this zone (a connection's shard depends
    /// on its zone).
    pub fn queue_of(&self, frame: &[u8], link: LinkType, queues: usize) -> usize {
        self.ct.queue_of_zoned(frame, link, self.zone, queues)
    }
}
