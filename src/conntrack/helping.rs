//! Helpers at work: running a connection's assigned helper over its packets, and the
//! expectations (and PPTP's GRE keys) it announces or takes back.

use super::*;

/// How long the Amanda helper keeps its master connection after each reply (seconds).
pub(super) const AMANDA_MASTER_TIMEOUT: u32 = 300;

/// An address in sixteen bytes, an IPv4 one in the first four (what `Addr::from_bytes` reads).
pub(super) fn pad16(a: &[u8]) -> [u8; 16] {
    let mut b = [0; 16];
    let n = a.len().min(16);
    b[..n].copy_from_slice(&a[..n]);
    b
}

/// The memory something needed could not be had.
#[derive(Clone, Copy, Debug)]
pub(super) struct NoRoom;

/// The expectation table as the SIP helper's reading asks it (see [`sip::Expect`]): for the
/// master `master` (helper `index`), whose packet went to `peer`.
pub(super) struct SipTable<'x, A: Addr> {
    x: &'x mut Expectations<A>,
    master: Key<A>,
    helper: &'static ctrack_helpers::Helper,
    peer: A,
    max_total: usize,
    now: Nanos,
}

/// The policy of `helper`'s expectation class `class` as an expectation spec.
pub(super) fn policy_spec(helper: &ctrack_helpers::Helper, class: u8) -> Spec {
    let p = helper.policies.get(usize::from(class));
    Spec {
        class,
        ..Spec::plain(
            p.map_or(0, |p| p.max_expected),
            ctrack_protocols::secs(p.map_or(0, |p| p.timeout)),
        )
    }
}

impl<A: Addr> SipTable<'_, A> {
    /// The policy of `class` as an expectation spec.
    fn spec(&self, class: sip::Class) -> Spec {
        policy_spec(self.helper, class as u8)
    }

    fn expected(&self, src: Option<A>, dst: [u8; 16], proto: u8, dport: u16) -> Expected<A> {
        Expected {
            src,
            sport: None,
            dst: A::from_bytes(&dst),
            dport,
            zone: self.master.zone,
            proto,
        }
    }
}

impl<A: Addr> sip::Expect for SipTable<'_, A> {
    fn flush(&mut self, media: bool) {
        self.x.flush_sip(&self.master, media, self.now);
    }

    fn media(&mut self, class: sip::Class, addr: [u8; 16], port: u16) -> bool {
        let index = ctrack_helpers::index_of(self.helper);
        // Media from the peer: when another SIP master already expects this very stream in
        // the same class (one call seen on two signalling connections), nothing is added.
        let asked = self.expected(Some(self.peer), addr, proto::UDP, port);
        if let Some((m, helper, c)) = self.x.matching(&asked, self.now)
            && m != self.master
            && helper == index
            && c == class as u8
        {
            return true;
        }
        // The RTP port is the even one of the pair, RTCP the odd one after it.
        let base = port & !1;
        let spec = Spec {
            skip_master: true,
            ..self.spec(class)
        };
        let rtp = self.expected(Some(self.peer), addr, proto::UDP, base);
        let rtcp = Expected {
            dport: base.wrapping_add(1),
            ..rtp
        };
        let (m, n, now) = (self.master, self.max_total, self.now);
        let first = self.x.expect(&m, index, rtp, spec, n, now);
        if !matches!(first, Ok(()) | Err(Refused::Already)) {
            return false;
        }
        match self.x.expect(&m, index, rtcp, spec, n, now) {
            Ok(()) | Err(Refused::Already) => true,
            Err(_) => {
                if first.is_ok() {
                    self.x.unexpect(&rtp, now);
                }
                false
            }
        }
    }

    fn signalling(&mut self, addr: [u8; 16], proto: u8, port: u16) -> bool {
        // Incoming calls from the registrar (the peer), to the registered contact; the
        // connection gets the SIP helper. Permanent, and inactive until the registrar agrees.
        let index = ctrack_helpers::index_of(self.helper);
        let spec = Spec {
            permanent: true,
            inactive: true,
            child_helper: index,
            ..self.spec(sip::Class::Signalling)
        };
        let e = self.expected(Some(self.peer), addr, proto, port);
        let (m, n, now) = (self.master, self.max_total, self.now);
        self.x.expect(&m, index, e, spec, n, now).is_ok()
    }

    fn refresh_signalling(&mut self, addr: [u8; 16], proto: u8, port: u16, expires: u32) -> bool {
        let dst = A::from_bytes(&addr);
        self.x
            .refresh_signalling(&self.master, dst, proto, port, expires, self.now)
    }
}

impl Conntrack {
    /// A TCP or UDP packet its tracker refuses (bad header, length or checksum): Linux looks
    /// its connection up before those checks and, finding none, makes one that takes a
    /// pending expectation for its tuple, then throws both away.
    #[cold]
    #[inline(never)]
    pub(super) fn spend_expectation<A: Addr>(&self, t: &Table<A>, p: &IpPacket<'_>, now: Nanos) {
        let l4 = p.l4();
        if self.cfg.helpers.is_empty() || l4.len() < 4 || t.expect.lock().none_pending() {
            return;
        }
        let key = port_key::<A>(p, l4, p.proto);
        let Some(inv) = key.inverse() else {
            return;
        };
        let h = self.hash(&key);
        {
            let mut g = t.shards[t.shard_of(h)].lock();
            self.advance(t, &mut g, now);
            if g.shard.find(h, &key, &inv).is_some() {
                return;
            }
        }
        let mut x = t.expect.lock();
        x.bury(&key, now);
        let _ = x.take(&key, now);
    }

    /// With helpers configured, what a new entry `e` gets: the pending expectation its tuple
    /// takes, if any (EXPECTED, and what it took returned: its master and their mark), and
    /// its helper: the ruleset's for its port, or else the one the expectation gives.
    /// [`NoRoom`] when the memory to record an expected connection cannot be had: nothing is
    /// taken then.
    #[inline(never)]
    pub(super) fn expected_and_helper<A: Addr>(
        &self,
        t: &Table<A>,
        e: &mut Entry<A>,
        now: Nanos,
    ) -> Result<Option<crate::expect::Taken<A>>, NoRoom> {
        // Quiet (as this thread left it, or another before): nothing pending to take.
        let taken = if t.expect.is_quiet() {
            None
        } else {
            let mut x = t.expect.lock();
            if x.none_pending() {
                None
            } else {
                x.bury(&e.key, now);
                // Room to record the connection as expected, before it takes anything.
                if !x.room_to_adopt(true) {
                    return Err(NoRoom);
                }
                x.take(&e.key, now)
            }
        };
        if taken.is_some() {
            e.status |= status::EXPECTED;
        }
        let rule = (self.helper_port(e.key.dport))
            .then(|| ctrack_helpers::assigned(&self.cfg.helpers, e.key.proto, e.key.dport))
            .flatten();
        e.helper = match rule {
            Some(hl) => ctrack_helpers::index_of(hl),
            None => taken.map_or(0, |tk| tk.child_helper),
        };
        Ok(taken)
    }

    /// The source key of a version-1 GRE packet with tuple `k` (its destination key set): what
    /// a PPTP master mapped, or 0.
    pub(super) fn gre_source_key<A: Addr>(&self, t: &Table<A>, k: &Key<A>) -> u16 {
        if self.cfg.helpers.is_empty() {
            return 0;
        }
        let x = t.expect.lock();
        if !x.has_keymap() {
            return 0;
        }
        x.gre_source_key(&k.src, &k.dst, k.dport)
    }

    /// A PPTP call was answered: expect its GRE both ways, keyed by the call IDs (`pac` the
    /// server's, `pns` the client's), and map the keys. Nothing is dropped when this fails.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn expect_gre<A: Addr>(
        &self,
        t: &Table<A>,
        orig: &Key<A>,
        helper: u8,
        spec: Spec,
        pac: u16,
        pns: u16,
        now: Nanos,
    ) {
        let gre = |src: A, sport: u16, dst: A, dport: u16| Expected {
            src: Some(src),
            sport: Some(sport),
            dst,
            dport,
            zone: orig.zone,
            proto: proto::GRE,
        };
        let to_server = gre(orig.src, pns, orig.dst, pac);
        let to_client = gre(orig.dst, pac, orig.src, pns);
        let spec = Spec {
            gre_call: true,
            ..spec
        };
        let max_total = self.expect_max();
        let mut x = t.expect.lock();
        if x.expect(orig, helper, to_server, spec, max_total, now)
            .is_err()
        {
            return;
        }
        if x.expect(orig, helper, to_client, spec, max_total, now)
            .is_err()
        {
            x.unexpect(&to_server, now);
            return;
        }
        let mapped = x.keymap_add(orig, 0, orig.src, orig.dst, pac, pns).is_ok()
            && (x.keymap_add(orig, 1, orig.dst, orig.src, pns, pac).is_ok() || {
                x.keymap_destroy(orig);
                false
            });
        if !mapped {
            x.unexpect(&to_client, now);
            x.unexpect(&to_server, now);
        }
    }

    /// A PPTP call ended: its key mappings go, and in each direction its GRE connection (or,
    /// when there is none, the expectation of it).
    pub(super) fn pptp_disconnect<A: Addr>(
        &self,
        t: &Table<A>,
        orig: &Key<A>,
        pac: u16,
        pns: u16,
        now: Nanos,
    ) {
        t.expect.lock().keymap_destroy(orig);
        for (src, dst, sport, dport) in [
            (orig.src, orig.dst, pns, pac),
            (orig.dst, orig.src, pac, pns),
        ] {
            let k = Key {
                src,
                dst,
                sport,
                dport,
                zone: orig.zone,
                proto: proto::GRE,
            };
            let Some(inv) = k.inverse() else {
                continue;
            };
            let h = self.hash(&k);
            let mut g = t.shards[t.shard_of(h)].lock();
            // The GRE entry's shard may have seen no packet for a while: brought up to now,
            // its clock gives the time the entry has left, and a timed-out entry is not
            // found (it leaves as timed out, as the kernel's lookup lets it).
            let now = self.advance(t, &mut g, now);
            if let Some(f) = g.shard.find(h, &k, &inv) {
                let expired = g.shard.get(f.idx).expired(now);
                self.drop_entry(t, &mut g, h, f.idx);
                if !expired {
                    continue;
                }
            }
            drop(g);
            t.expect.lock().withdraw(&k, now);
        }
    }

    /// True when the connection of a packet with tuple `k` (hash `h`) is in the table at
    /// `now`: an entry that has timed out but is not swept yet does not count (the packet
    /// will make a new one).
    pub(super) fn in_table<A: Addr>(&self, t: &Table<A>, k: &Key<A>, h: u64, now: Nanos) -> bool {
        let Some(inv) = k.inverse() else {
            return false;
        };
        let g = t.shards[t.shard_of(h)].lock();
        let now = now.max(g.shard.clock);
        g.shard
            .find(h, k, &inv)
            .is_some_and(|f| !g.shard.get(f.idx).expired(now))
    }

    /// The connection's helper, when it has one, reads a packet its tracker let through (`v`;
    /// `fresh`: the packet found no entry and may have made one), may refresh the connection
    /// (SIP, Amanda) and may announce expectations; the packet is dropped when the helper
    /// refuses it (a command it could not read whole, an expectation it could not add), and a
    /// connection it opened is then never confirmed. The SNMP and NetBIOS-NS helpers are
    /// assigned but announce nothing (they only follow packets the host sends itself).
    /// `mark`: where the event queue stood before the packet was tracked (see
    /// [`EventQueue::mark`]); what the helper changes of the packet's events is among those
    /// queued since.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn help<A: Addr>(
        &self,
        t: &Table<A>,
        r: &Ready<'_, A>,
        l4: &[u8],
        v: Verdict,
        fresh: bool,
        now: Nanos,
        mark: u64,
    ) -> Verdict {
        if !v.tracked() || r.route != Route::Passes {
            return v;
        }
        let Some(inv) = r.key.inverse() else {
            return v;
        };
        let orig = if v.dir == Dir::Original { r.key } else { inv };
        if !self.cfg.host.confirms(&orig.src, &orig.dst) {
            return v;
        }
        let payload = match &r.l4 {
            ReadyL4::Tcp(seg) => l4.get(l4.len().saturating_sub(seg.data_len as usize)..),
            ReadyL4::Udp => l4.get(8..),
        };
        let payload = payload.unwrap_or_default();
        let is_udp = matches!(r.l4, ReadyL4::Udp);
        // Only a connection still in the table has a helper (its tracker may have killed it
        // with this very packet); the SIP and Amanda helpers refresh it before reading.
        let h = self.hash(&orig);
        let (helper, expected) = {
            let mut g = t.shards[t.shard_of(h)].lock();
            let Some(f) = g.shard.find(h, &orig, &inv) else {
                return v;
            };
            let e = g.shard.get(f.idx);
            let (index, expected) = (e.helper, e.status & status::EXPECTED != 0);
            let Some(helper) = ctrack_helpers::at_index(index) else {
                return v;
            };
            let keep = match helper.name {
                "sip" if !payload.is_empty() && (is_udp || v.state == State::Established) => {
                    Some(sip::SIP_TIMEOUT)
                }
                "amanda" if v.dir == Dir::Reply => Some(AMANDA_MASTER_TIMEOUT),
                _ => None,
            };
            if let Some(secs) = keep {
                g.shard
                    .set_expiry(f.idx, now.saturating_add(ctrack_protocols::secs(secs)), now);
                if let Some(q) = &self.events {
                    // The kernel reports the packet's events after its helper has run.
                    q.amend_seconds(&orig.to_tuple(), now, u64::from(secs), mark);
                }
            }
            (helper, expected)
        };
        let out = self.read_for_helper(t, r, helper, &orig, v, payload, expected, now);
        if out.state == State::Dropped && fresh && matches!(v.state, State::New | State::Related) {
            // Dropped before it was confirmed: the entry never was. (An entry that was
            // already there keeps living; only the packet is dropped.)
            let slot = &t.shards[t.shard_of(h)];
            let mut g = slot.lock();
            if let Some(f) = g.shard.find(h, &orig, &inv) {
                let e = g.shard.remove(h, f.idx);
                self.forget(t, &e, now);
                self.count.fetch_sub(1, Ordering::Relaxed);
                g.stats.insert -= 1;
                if let Some(q) = &self.events {
                    q.retract_new(&orig.to_tuple(), mark);
                }
            }
        } else if out.state == State::Dropped
            && let Some(q) = &self.events
            && let Some(moved) = q.retract_update(&orig.to_tuple(), now, mark)
        {
            // The packet's update waits for the entry's next packet that gets through.
            let mut g = t.shards[t.shard_of(h)].lock();
            if let Some(f) = g.shard.find(h, &orig, &inv) {
                let e = g.shard.get_mut(f.idx);
                e.status |= status::UNREPORTED;
                if moved {
                    e.status |= status::UNREPORTED_STATE;
                }
            }
        }
        out
    }

    /// What `helper` makes of a packet of its master `orig` (see [`Conntrack::help`]):
    /// `payload` is the layer-4 payload, `expected` the master's EXPECTED status.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_for_helper<A: Addr>(
        &self,
        t: &Table<A>,
        r: &Ready<'_, A>,
        helper: &'static ctrack_helpers::Helper,
        orig: &Key<A>,
        v: Verdict,
        payload: &[u8],
        expected: bool,
        now: Nanos,
    ) -> Verdict {
        let index = ctrack_helpers::index_of(helper);
        let max_total = self.expect_max();
        let plain = |class| policy_spec(helper, class);
        let tcp_from = |src: Option<A>, dst: A, dport: u16| Expected {
            src,
            sport: None,
            dst,
            dport,
            zone: orig.zone,
            proto: proto::TCP,
        };
        match (helper.name, &r.l4) {
            ("ftp", ReadyL4::Tcp(seg)) => {
                if v.state != State::Established || payload.is_empty() {
                    return v;
                }
                let (dir, sender) = (v.dir, r.key.src);
                let mut x = t.expect.lock();
                let mut out = v;
                // Without the memory for what it remembers, the segment is dropped.
                let Some(master) = x.master(orig) else {
                    return Verdict::DROPPED;
                };
                if master.lines.starts_line(dir, seg.seq) {
                    match ftp::parse(dir, payload, A::V6) {
                        ftp::Found::Nothing => {}
                        // The kernel drops it, and remembers nothing of it.
                        ftp::Found::Partial => return Verdict::DROPPED,
                        ftp::Found::Address { v4, v6, port } => {
                            let announced = match (v4, v6) {
                                (Some(a), _) => {
                                    // Over IPv6, the IPv4 address lands on the first four
                                    // bytes of the sender's.
                                    let mut bytes = pad16(sender.as_ref());
                                    bytes[..4].copy_from_slice(&a);
                                    A::from_bytes(&bytes)
                                }
                                (None, Some(a)) => A::from_bytes(&a),
                                (None, None) => sender,
                            };
                            // An address other than the sender's is not followed.
                            if announced == sender {
                                let e = tcp_from(Some(r.key.dst), sender, port);
                                if x.expect(orig, index, e, plain(0), max_total, now).is_err() {
                                    out = Verdict::DROPPED;
                                }
                            }
                        }
                    }
                }
                if let Some(master) = x.master(orig) {
                    master.lines.note_segment(dir, seg.seq, payload);
                }
                out
            }
            ("tftp", ReadyL4::Udp) => {
                if !tftp::is_request(payload) {
                    return v;
                }
                // The transfer comes back from the server, from any port, to the client's.
                let e = Expected {
                    proto: proto::UDP,
                    ..tcp_from(Some(orig.dst), orig.src, orig.sport)
                };
                let mut x = t.expect.lock();
                match x.expect(orig, index, e, plain(0), max_total, now) {
                    Ok(()) => v,
                    Err(_) => Verdict::DROPPED,
                }
            }
            ("irc", ReadyL4::Tcp(_)) => {
                // Client to server only, once both ways have been seen; IPv4 only.
                if A::V6 || v.dir != Dir::Original || v.state != State::Established {
                    return v;
                }
                let client = orig.src;
                // The first offer read decides: one naming another address (or port zero)
                // ends the reading, as kernels since 2026 do.
                let offer = irc::offer(payload)
                    .filter(|&(ip, port)| A::from_bytes(&pad16(&ip)) == client && port != 0);
                let Some((_, port)) = offer else {
                    return v;
                };
                // To the client, from anywhere.
                let e = tcp_from(None, client, port);
                match t
                    .expect
                    .lock()
                    .expect(orig, index, e, plain(0), max_total, now)
                {
                    Ok(()) => v,
                    Err(_) => Verdict::DROPPED,
                }
            }
            ("amanda", ReadyL4::Udp) => {
                if v.dir != Dir::Reply || payload.is_empty() {
                    return v;
                }
                let mut out = v;
                let mut x = t.expect.lock();
                for port in amanda::ports(payload) {
                    let e = tcp_from(Some(orig.src), orig.dst, port);
                    if x.expect(orig, index, e, plain(0), max_total, now).is_err() {
                        out = Verdict::DROPPED;
                    }
                }
                out
            }
            ("sane", ReadyL4::Tcp(_)) => {
                if v.state != State::Established || payload.is_empty() {
                    return v;
                }
                let mut x = t.expect.lock();
                let Some(master) = x.master(orig) else {
                    return Verdict::DROPPED;
                };
                if v.dir == Dir::Original {
                    master.sane.client(payload);
                    return v;
                }
                let Some(port) = master.sane.server(payload) else {
                    return v;
                };
                // The client opens the data connection to the server.
                let e = tcp_from(Some(orig.src), orig.dst, port);
                match x.expect(orig, index, e, plain(0), max_total, now) {
                    Ok(()) => v,
                    Err(_) => Verdict::DROPPED,
                }
            }
            ("sip", l4) => {
                // Over TCP, established connections only.
                let tcp = matches!(l4, ReadyL4::Tcp(_));
                if tcp && v.state != State::Established {
                    return v;
                }
                let mut x = t.expect.lock();
                let Some(mut m) = x.master(orig).map(|m| m.sip) else {
                    return Verdict::DROPPED;
                };
                let conn = sip::Conn {
                    v6: A::V6,
                    src: pad16(r.key.src.as_ref()),
                    dst: pad16(r.key.dst.as_ref()),
                    expected,
                };
                let mut table = SipTable {
                    x: &mut x,
                    master: *orig,
                    helper,
                    peer: r.key.dst,
                    max_total,
                    now,
                };
                let outcome = if tcp {
                    sip::help_tcp(&mut m, &conn, payload, &mut table)
                } else {
                    sip::help_udp(&mut m, &conn, payload, &mut table)
                };
                if let Some(master) = x.master(orig) {
                    master.sip = m;
                }
                match outcome {
                    sip::Outcome::Accept => v,
                    sip::Outcome::Drop => Verdict::DROPPED,
                }
            }
            ("pptp", ReadyL4::Tcp(_)) => {
                // IPv4 only; once both ways have been seen; never dropped.
                if A::V6 || v.state != State::Established || payload.is_empty() {
                    return v;
                }
                let from_client = v.dir == Dir::Original;
                let act = (t.expect.lock().master(orig)).map(|m| m.pptp.read(from_client, payload));
                let Some(act) = act else {
                    return Verdict::DROPPED;
                };
                match act {
                    pptp::Action::None => {}
                    pptp::Action::ExpectGre { pac, pns } => {
                        self.expect_gre(t, orig, index, plain(0), pac, pns, now);
                    }
                    pptp::Action::Disconnect { pac, pns } => {
                        self.pptp_disconnect(t, orig, pac, pns, now)
                    }
                }
                v
            }
            _ => v,
        }
    }
}
