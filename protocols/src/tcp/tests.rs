//! Unit tests: header checks, the transition table, window tracking and scaling, RST rules,
//! timeouts. Expectations marked "oracle" were checked against the kernel (ktrace).

use super::*;
use crate::NANOS_PER_SEC;

const O: Dir = Dir::Original;
const R: Dir = Dir::Reply;

/// Drives one entry the way the engine does: creation, SEEN_REPLY, ASSURED, expiry.
struct Drive {
    st: Option<TcpState>,
    seen_reply: bool,
    assured: bool,
    expires: Nanos,
    now: Nanos,
    s: Sysctl,
}

/// What a segment did, in ktrace's words plus the timeout it set.
#[derive(Debug, PartialEq, Eq)]
enum V {
    /// Accepted; the timeout it set in seconds (None = unchanged).
    Ok(Option<u64>),
    /// Kept the entry without changing it.
    Ign,
    /// Lost its entry.
    Inv,
    /// Accepted and the entry deleted.
    Killed,
}

impl Drive {
    fn new(s: Sysctl) -> Drive {
        Drive {
            st: None,
            seen_reply: false,
            assured: false,
            expires: 0,
            now: 0,
            s,
        }
    }

    fn defaults() -> Drive {
        Drive::new(Sysctl::default())
    }

    fn st(&self) -> &TcpState {
        self.st.as_ref().expect("entry")
    }

    fn state(&self) -> &'static str {
        self.st.as_ref().map_or("-", state_name)
    }

    fn tick(&mut self, secs: u64) {
        self.now += secs * NANOS_PER_SEC;
    }

    fn send(&mut self, dir: Dir, seg: Segment<'_>) -> V {
        self.now += 1_000_000;
        let Some(mut st) = self.st else {
            assert_eq!(
                dir, O,
                "no entry: only the original direction can create one"
            );
            let Some(mut st) = new_conn(&seg, &self.s) else {
                return V::Inv;
            };
            let ctx = Ctx {
                dir,
                confirmed: false,
                seen_reply: false,
                assured: false,
                now: self.now,
                expires: 0,
            };
            return match track(&mut st, &seg, &ctx, &self.s) {
                Decision::Accept(a) => {
                    assert!(!a.kill && !a.assured);
                    self.expires = self.now + a.timeout.expect("first packet sets a timeout");
                    self.st = Some(st);
                    V::Ok(a.timeout.map(|t| t / NANOS_PER_SEC))
                }
                d => panic!("unexpected {d:?} for a new entry"),
            };
        };
        let ctx = Ctx {
            dir,
            confirmed: true,
            seen_reply: self.seen_reply,
            assured: self.assured,
            now: self.now,
            expires: self.expires,
        };
        let v = track_full(&mut st, &seg, &ctx, &self.s);
        self.st = Some(st);
        match v.decision {
            Decision::Invalid => {
                if let Some(t) = v.lower_timeout {
                    self.expires = self.now + t;
                }
                V::Inv
            }
            Decision::Reopen => {
                self.st = None;
                self.seen_reply = false;
                self.assured = false;
                self.send(dir, seg)
            }
            Decision::Ignore => {
                self.seen_reply |= dir == R;
                V::Ign
            }
            Decision::Partial(_) => unreachable!("TCP decides whole"),
            Decision::Accept(a) => {
                self.seen_reply |= dir == R;
                self.assured |= a.assured;
                if a.kill {
                    self.st = None;
                    return V::Killed;
                }
                if let Some(t) = a.timeout {
                    self.expires = self.now + t;
                }
                V::Ok(a.timeout.map(|t| t / NANOS_PER_SEC))
            }
        }
    }

    fn left(&self) -> u64 {
        self.expires.saturating_sub(self.now) / NANOS_PER_SEC
    }
}

fn seg(seq: u32, ack: u32, flags: u8, window: u16, len: u32) -> Segment<'static> {
    Segment::new(seq, ack, flags, window, len)
}

/// Window-scale option (shift `n`) after an MSS option.
fn ws(n: u8) -> [u8; 8] {
    [2, 4, 5, 0xb4, 1, 3, 3, n]
}

const SACK_PERM: [u8; 4] = [1, 1, 4, 2];

/// Client 1000, server 5000; a plain handshake with the given windows. Returns the driver.
fn established(cwin: u16, swin: u16) -> Drive {
    let mut d = Drive::defaults();
    assert_eq!(d.send(O, seg(1000, 0, SYN, cwin, 0)), V::Ok(Some(120)));
    assert_eq!(
        d.send(R, seg(5000, 1001, SYN | ACK, swin, 0)),
        V::Ok(Some(60))
    );
    assert_eq!(
        d.send(O, seg(1001, 5001, ACK, cwin, 0)),
        V::Ok(Some(432000))
    );
    assert!(d.assured);
    d
}

// ------------------------------------------------------------------ headers

fn header(flags: u8, doff: u8, total: usize) -> Vec<u8> {
    let mut h = vec![0u8; total];
    h[0..2].copy_from_slice(&1234u16.to_be_bytes());
    h[2..4].copy_from_slice(&80u16.to_be_bytes());
    h[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    h[8..12].copy_from_slice(&0x0a0b_0c0du32.to_be_bytes());
    h[12] = doff << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&512u16.to_be_bytes());
    h
}

#[test]
fn parse_fields() {
    let mut b = header(ACK | PSH, 6, 30);
    b[20..24].copy_from_slice(&[1, 1, 1, 0]);
    let s = parse(&b).unwrap();
    assert_eq!(s.seq, 0x0102_0304);
    assert_eq!(s.ack, 0x0a0b_0c0d);
    assert_eq!(s.flags, ACK | PSH);
    assert_eq!(s.window, 512);
    assert_eq!(s.data_len, 6);
    assert_eq!(s.options, &[1, 1, 1, 0]);
    assert_eq!(s.end(), 0x0102_0304 + 6);
}

#[test]
fn parse_errors() {
    assert_eq!(parse(&[0; 19]), Err(HeaderError::Short));
    assert_eq!(parse(&header(ACK, 4, 40)), Err(HeaderError::BadDataOffset));
    assert_eq!(parse(&header(ACK, 0, 40)), Err(HeaderError::BadDataOffset));
    assert_eq!(parse(&header(ACK, 15, 59)), Err(HeaderError::Truncated));
    assert!(parse(&header(ACK, 15, 60)).is_ok());
    assert_eq!(parse(&header(FIN, 5, 20)), Err(HeaderError::BadFlags(FIN)));
}

#[test]
fn flag_combinations() {
    // Exactly these (PSH, ECE, CWR aside) are valid.
    let valid = [
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    ];
    let mut n = 0;
    for f in 0..=255u8 {
        let base = f & !(PSH | ECE | CWR);
        let ok = parse(&header(f, 5, 20)).is_ok();
        assert_eq!(ok, valid.contains(&base), "flags {f:#04x}");
        n += usize::from(ok);
    }
    assert_eq!(n, 9 * 8);
    for bad in [
        0,
        FIN,
        SYN | FIN,
        SYN | RST,
        FIN | PSH | URG,
        RST | FIN,
        SYN | ACK | FIN,
    ] {
        assert!(!flags_valid(bad), "{bad:#04x}");
    }
}

#[test]
fn segment_end_counts_syn_and_fin() {
    assert_eq!(seg(10, 0, SYN, 1, 0).end(), 11);
    assert_eq!(seg(10, 0, FIN | ACK, 1, 5).end(), 16);
    assert_eq!(seg(u32::MAX, 0, SYN, 1, 3).end(), 3);
}

// ------------------------------------------------------------------ table

#[test]
fn transition_table_spot_checks() {
    use State::*;
    let t = |d, c, s| transition(d, c, s);
    assert_eq!(t(O, Class::Syn, None), Next::To(SynSent));
    assert_eq!(t(O, Class::Syn, Established), Next::Ignore);
    assert_eq!(t(O, Class::Syn, TimeWait), Next::To(SynSent));
    assert_eq!(t(O, Class::Syn, Close), Next::To(SynSent));
    assert_eq!(t(R, Class::Syn, TimeWait), Next::To(SynSent));
    assert_eq!(t(R, Class::Syn, Close), Next::Invalid);
    assert_eq!(t(R, Class::Syn, SynSent), Next::To(SynSent2));
    assert_eq!(t(O, Class::SynAck, SynSent2), Next::To(SynRecv));
    assert_eq!(t(O, Class::SynAck, Established), Next::Invalid);
    assert_eq!(t(R, Class::SynAck, Established), Next::Ignore);
    assert_eq!(t(R, Class::SynAck, SynSent), Next::To(SynRecv));
    assert_eq!(t(O, Class::Fin, SynSent), Next::Invalid);
    assert_eq!(t(R, Class::Fin, FinWait), Next::To(LastAck));
    assert_eq!(t(O, Class::Ack, None), Next::To(Established));
    assert_eq!(t(R, Class::Ack, None), Next::Invalid);
    assert_eq!(t(R, Class::Ack, SynSent), Next::Ignore);
    assert_eq!(t(R, Class::Ack, SynRecv), Next::To(SynRecv));
    assert_eq!(t(O, Class::Ack, LastAck), Next::To(TimeWait));
    assert_eq!(t(O, Class::Rst, None), Next::Invalid);
    assert_eq!(t(R, Class::Rst, SynSent2), Next::To(Close));
    for d in [O, R] {
        for s in STATES {
            assert_eq!(t(d, Class::None, s.0), Next::Invalid);
        }
    }
    // Nothing leads back to NONE.
    for row in TRANSITIONS.iter().flatten() {
        assert!(!row.contains(&Next::To(None)));
    }
}

#[test]
fn classes() {
    assert_eq!(Class::of(RST | SYN | ACK), Class::Rst);
    assert_eq!(Class::of(SYN | ACK | FIN), Class::SynAck);
    assert_eq!(Class::of(SYN | URG), Class::Syn);
    assert_eq!(Class::of(FIN | ACK), Class::Fin);
    assert_eq!(Class::of(ACK | PSH), Class::Ack);
    assert_eq!(Class::of(PSH), Class::None);
}

#[test]
fn names_and_size() {
    assert!(std::mem::size_of::<TcpState>() <= 56);
    let names: Vec<_> = STATES.iter().map(|s| s.0.name()).collect();
    assert_eq!(
        names,
        [
            "NONE",
            "SYN_SENT",
            "SYN_RECV",
            "ESTABLISHED",
            "FIN_WAIT",
            "CLOSE_WAIT",
            "LAST_ACK",
            "TIME_WAIT",
            "CLOSE",
            "SYN_SENT2"
        ]
    );
    for (i, (s, _)) in STATES.iter().enumerate() {
        assert_eq!(*s as usize, i);
    }
}

// ------------------------------------------------------------------ new entries

#[test]
fn new_entries() {
    let s = Sysctl::default();
    let opts = ws(20);
    let syn = seg(100, 0, SYN, 0, 3).with_options(&opts);
    let st = new_conn(&syn, &s).unwrap();
    assert_eq!(st.state(), State::None);
    assert_eq!(
        st.side(O),
        Side {
            end: 104,
            maxend: 104,
            maxwin: 1,
            maxack: 0
        }
    );
    assert_eq!(st.scale(O), 14);
    assert!(!st.liberal(O));

    let st = new_conn(&seg(100, 7, ACK, 500, 10), &s).unwrap();
    assert_eq!(
        st.side(O),
        Side {
            end: 110,
            maxend: 610,
            maxwin: 500,
            maxack: 0
        }
    );
    for d in [O, R] {
        assert!(st.liberal(d) && st.sack_permitted(d));
    }
    let strict = Sysctl {
        nf_conntrack_tcp_loose: 0,
        ..Sysctl::default()
    };
    assert!(new_conn(&seg(100, 7, ACK, 500, 10), &strict).is_none());
    assert!(new_conn(&seg(100, 0, SYN, 500, 0), &strict).is_some());
    for f in [SYN | ACK, FIN | ACK, RST, RST | ACK] {
        assert!(new_conn(&seg(1, 1, f, 1, 0), &s).is_none(), "{f:#x}");
    }
}

// ------------------------------------------------------------------ handshakes and closes

#[test]
fn handshake_and_close() {
    let mut d = established(64240, 65160);
    assert_eq!(d.state(), "ESTABLISHED");
    // Data: unacknowledged -> 300 s until acked.
    assert_eq!(
        d.send(O, seg(1001, 5001, ACK | PSH, 64240, 100)),
        V::Ok(Some(300))
    );
    assert_eq!(
        d.send(R, seg(5001, 1101, ACK, 65160, 0)),
        V::Ok(Some(432000))
    );
    assert_eq!(
        d.send(O, seg(1101, 5001, FIN | ACK, 64240, 0)),
        V::Ok(Some(120))
    );
    assert_eq!(d.state(), "FIN_WAIT");
    assert!(d.st().close_initiator(O));
    assert_eq!(d.send(R, seg(5001, 1102, ACK, 65160, 0)), V::Ok(Some(60)));
    assert_eq!(d.state(), "CLOSE_WAIT");
    assert_eq!(
        d.send(R, seg(5001, 1102, FIN | ACK, 65160, 0)),
        V::Ok(Some(30))
    );
    assert_eq!(d.state(), "LAST_ACK");
    assert_eq!(d.send(O, seg(1102, 5002, ACK, 64240, 0)), V::Ok(Some(120)));
    assert_eq!(d.state(), "TIME_WAIT");
    // A new SYN: a FIN was seen, so the entry is replaced.
    assert_eq!(d.send(O, seg(90000, 0, SYN, 64240, 0)), V::Ok(Some(120)));
    assert_eq!(d.state(), "SYN_SENT");
    assert!(!d.seen_reply);
}

#[test]
fn fin_in_handshake_never_assured() {
    // oracle: tcp/handshake_fin_no_assured
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 100, 0));
    d.send(R, seg(5000, 1001, SYN | ACK, 100, 0));
    assert_eq!(
        d.send(O, seg(1001, 5001, FIN | ACK, 100, 0)),
        V::Ok(Some(120))
    );
    assert!(!d.assured);
    d.send(R, seg(5001, 1002, FIN | ACK, 100, 0));
    d.send(O, seg(1002, 5002, ACK, 100, 0));
    assert_eq!(d.state(), "TIME_WAIT");
    assert!(!d.assured);
}

#[test]
fn invalid_before_syn_ack() {
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 100, 0));
    assert_eq!(d.send(O, seg(1001, 77, ACK, 100, 0)), V::Inv);
    assert_eq!(d.send(O, seg(1001, 77, FIN | ACK, 100, 0)), V::Inv);
    assert_eq!(d.send(R, seg(5000, 1001, FIN | ACK, 100, 0)), V::Inv);
    // A SYN/ACK acking more than the SYN: invalid; less: accepted.
    assert_eq!(d.send(R, seg(5000, 1005, SYN | ACK, 100, 0)), V::Inv);
    assert_eq!(
        d.send(R, seg(5000, 900, SYN | ACK, 100, 0)),
        V::Ok(Some(60))
    );
}

#[test]
fn syn_retransmit_does_not_refresh() {
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 100, 0));
    d.tick(3);
    assert_eq!(d.send(O, seg(1000, 0, SYN, 100, 0)), V::Ign);
    assert_eq!(d.left(), 116);
    // A later ISN restarts the client side, still without refreshing.
    assert_eq!(d.send(O, seg(9000, 0, SYN, 100, 0)), V::Ign);
    assert_eq!(d.st().side(O).end, 9001);
    assert_eq!(
        d.send(R, seg(5000, 9001, SYN | ACK, 100, 0)),
        V::Ok(Some(60))
    );
}

#[test]
fn simultaneous_open() {
    // oracle: tcp/simultaneous_open, tcp/simultaneous_open_ack_only
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 100, 0));
    // The reply SYN moves to SYN_SENT2 but, a SYN in SYN_SENT before any reply, does not
    // refresh the entry.
    assert_eq!(d.send(R, seg(5000, 0, SYN, 100, 0)), V::Ign);
    assert_eq!(d.state(), "SYN_SENT2");
    assert_eq!(
        d.send(O, seg(1000, 5001, SYN | ACK, 100, 0)),
        V::Ok(Some(60))
    );
    assert_eq!(d.state(), "SYN_RECV");
    // The reply side's ACK completes it, and assures it.
    assert_eq!(d.send(R, seg(5001, 1001, ACK, 100, 0)), V::Ok(Some(432000)));
    assert_eq!(d.state(), "ESTABLISHED");
    assert!(d.assured);
}

#[test]
fn synack_retransmit_is_ignored() {
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 100, 0));
    d.send(R, seg(5000, 1001, SYN | ACK, 100, 0));
    assert_eq!(d.send(R, seg(5000, 1001, SYN | ACK, 100, 0)), V::Ign);
    d.send(O, seg(1001, 5001, ACK, 100, 0));
    assert_eq!(d.send(R, seg(5000, 1001, SYN | ACK, 100, 0)), V::Ign);
    assert_eq!(d.state(), "ESTABLISHED");
}

// ------------------------------------------------------------------ window tracking

#[test]
fn window_bounds() {
    // oracle: tcp/out_of_window_orig
    let mut d = established(64240, 1000);
    d.send(O, seg(1001, 5001, ACK | PSH, 64240, 500));
    d.send(R, seg(5001, 1501, ACK, 1000, 0));
    let n = 1501;
    // I: beyond the window by more than it: invalid.
    assert_eq!(
        d.send(O, seg(n + 5000, 5001, ACK | PSH, 64240, 100)),
        V::Inv
    );
    // II: an old FIN long before the window: ignored, no FIN_WAIT.
    assert_eq!(
        d.send(O, seg(n.wrapping_sub(300_000), 5001, FIN | ACK, 64240, 0)),
        V::Ign
    );
    assert_eq!(d.state(), "ESTABLISHED");
    // Retransmission inside the window: fine.
    assert_eq!(
        d.send(O, seg(n - 500, 5001, ACK | PSH, 64240, 100)),
        V::Ok(Some(432000))
    );
    // III: acknowledging unsent data: invalid.
    assert_eq!(d.send(R, seg(5001, n + 10, ACK, 1000, 0)), V::Inv);
    // IV: an acknowledgement far behind: ignored.
    assert_eq!(
        d.send(R, seg(5001, n.wrapping_sub(100_000), FIN | ACK, 1000, 0)),
        V::Ign
    );
    assert_eq!(d.state(), "ESTABLISHED");
}

#[test]
fn overshoot_records_end() {
    // oracle: tcp/overshoot_window
    let mut d = established(64240, 1000);
    d.send(O, seg(1001, 5001, ACK | PSH, 64240, 1000));
    let n = 2001;
    assert_eq!(d.send(O, seg(n + 1, 5001, ACK | PSH, 64240, 100)), V::Ign);
    assert_eq!(d.st().side(O).end, n + 101);
    assert!(d.st().unacknowledged(O));
    assert_eq!(
        d.send(R, seg(5001, n + 101, ACK, 1000, 0)),
        V::Ok(Some(432000))
    );
    assert_eq!(
        d.send(O, seg(n + 1106, 5001, ACK | PSH, 64240, 3000)),
        V::Inv
    );
    assert_eq!(d.send(R, seg(5001, n + 4106, ACK, 1000, 0)), V::Inv);
}

#[test]
fn liberal_sysctl_accepts_out_of_window() {
    // oracle: tcp/be_liberal
    let mut d = established(64240, 1000);
    d.s.nf_conntrack_tcp_be_liberal = 1;
    assert_eq!(
        d.send(O, seg(600_000, 5001, ACK | PSH, 64240, 100)),
        V::Ok(Some(432000))
    );
    // Nothing was recorded from it.
    assert_eq!(d.st().side(O).end, 1001);
    assert_eq!(
        d.send(R, seg(5001, 999_999, ACK, 1000, 0)),
        V::Ok(Some(432000))
    );
    // But the RST sequence check still applies.
    d.send(O, seg(1001, 5001, ACK | PSH, 64240, 100));
    d.send(R, seg(5001, 1101, ACK, 1000, 0));
    assert_eq!(d.send(O, seg(1050, 5001, RST, 0, 0)), V::Inv);
}

#[test]
fn window_scaling_both_sides() {
    let (c, s) = (ws(7), ws(7));
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 100, 0).with_options(&c));
    d.send(R, seg(5000, 1001, SYN | ACK, 100, 0).with_options(&s));
    assert_eq!((d.st().scale(O), d.st().scale(R)), (7, 7));
    // The SYN/ACK window is not scaled: the client may send only 100 bytes so far.
    assert_eq!(d.st().side(O).maxend, 1101);
    d.send(O, seg(1001, 5001, ACK, 100, 0));
    d.send(R, seg(5001, 1001, ACK, 100, 0));
    assert_eq!(d.st().side(O).maxend, 1001 + 12800);
    assert_eq!(
        d.send(O, seg(1001 + 5000, 5001, ACK, 100, 10)),
        V::Ok(Some(300))
    );
}

#[test]
fn window_scaling_needs_both() {
    // oracle: tcp/wscale_client_only, tcp/wscale_server_only, tcp/wscale_none
    for (c, s) in [(Some(7), None), (None, Some(9)), (None, None)] {
        let (co, so) = (c.map(ws), s.map(ws));
        let mut d = Drive::defaults();
        let syn = seg(1000, 0, SYN, 100, 0);
        d.send(O, co.as_ref().map_or(syn, |o| syn.with_options(o)));
        let sa = seg(5000, 1001, SYN | ACK, 100, 0);
        d.send(R, so.as_ref().map_or(sa, |o| sa.with_options(o)));
        assert_eq!((d.st().scale(O), d.st().scale(R)), (0, 0));
        d.send(O, seg(1001, 5001, ACK | PSH, 100, 50));
        d.send(R, seg(5001, 1051, ACK, 100, 0));
        assert_eq!(d.send(O, seg(1051 + 5000, 5001, ACK, 100, 10)), V::Inv);
    }
}

#[test]
fn window_scale_capped_at_14() {
    // oracle: tcp/wscale_capped_15
    let o = ws(15);
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 4, 0).with_options(&o));
    d.send(R, seg(5000, 1001, SYN | ACK, 4, 0).with_options(&o));
    assert_eq!(d.st().scale(R), 14);
    d.send(O, seg(1001, 5001, ACK, 4, 1));
    d.send(R, seg(5001, 1002, ACK, 4, 0));
    assert_eq!(
        d.send(O, seg(1002 + 65536 - 10, 5001, ACK, 4, 10)),
        V::Ok(Some(300))
    );
    assert_eq!(d.send(O, seg(1002 + 131072, 5001, ACK, 4, 10)), V::Inv);
}

fn sack_block(ack: u32, left: u32, right: u32) -> Vec<u8> {
    let _ = ack;
    let mut o = vec![1, 1, 5, 10];
    o.extend_from_slice(&left.to_be_bytes());
    o.extend_from_slice(&right.to_be_bytes());
    o
}

#[test]
fn sack_right_edge() {
    // oracle: tcp/sack_edges, tcp/sack_not_permitted
    for (client_perm, want) in [(true, V::Inv), (false, V::Ok(Some(300)))] {
        let copt: &[u8] = if client_perm { &SACK_PERM } else { &[] };
        let mut d = Drive::defaults();
        d.send(O, seg(1000, 0, SYN, 60000, 0).with_options(copt));
        d.send(
            R,
            seg(5000, 1001, SYN | ACK, 60000, 0).with_options(&SACK_PERM),
        );
        d.send(O, seg(1001, 5001, ACK | PSH, 60000, 1000));
        let ok = sack_block(1001, 1501, 2001);
        assert_eq!(
            d.send(R, seg(5001, 1001, ACK, 60000, 0).with_options(&ok)),
            V::Ok(Some(300))
        );
        let past = sack_block(1001, 1501, 2011);
        assert_eq!(
            d.send(R, seg(5001, 1001, ACK, 60000, 0).with_options(&past)),
            want
        );
    }
}

#[test]
fn sequence_wrap() {
    let mut d = Drive::defaults();
    let isn = u32::MAX - 100;
    d.send(O, seg(isn, 0, SYN, 60000, 0));
    d.send(R, seg(7, isn.wrapping_add(1), SYN | ACK, 60000, 0));
    d.send(O, seg(isn.wrapping_add(1), 8, ACK, 60000, 0));
    assert_eq!(
        d.send(O, seg(isn.wrapping_add(1), 8, ACK | PSH, 60000, 1000)),
        V::Ok(Some(300))
    );
    assert_eq!(d.st().side(O).end, 900);
    assert_eq!(d.send(R, seg(8, 900, ACK, 60000, 0)), V::Ok(Some(432000)));
    assert_eq!(d.send(O, seg(900 + 200_000, 8, ACK, 60000, 10)), V::Inv);
}

#[test]
fn pickup_is_liberal_and_capped() {
    // oracle: tcp/pickup_loose
    let mut d = Drive::defaults();
    assert_eq!(
        d.send(O, seg(777_777, 888_888, ACK | PSH, 500, 100)),
        V::Ok(Some(300))
    );
    assert_eq!(d.state(), "ESTABLISHED");
    // The first reply is still capped (SEEN_REPLY is set after it).
    assert_eq!(
        d.send(R, seg(888_888, 777_877, ACK, 500, 0)),
        V::Ok(Some(300))
    );
    assert!(!d.assured);
    // Way out of window, but liberal: accepted, and (failing the checks) records nothing, not
    // even unacknowledged data; now answered, the entry gets the full timeout.
    assert_eq!(
        d.send(R, seg(1_788_888, 777_877, ACK | PSH, 500, 100)),
        V::Ok(Some(432000))
    );
    assert!(d.assured);
    assert!(d.st().liberal(O) && d.st().liberal(R));
}

#[test]
fn liberal_segments_stay_on_the_fast_path() {
    // A picked-up connection (liberal for life) whose segments overshoot its unscaled window,
    // as in a capture that starts mid-connection: `track_established` answers them itself,
    // with the state and refresh the general code gives.
    let mut d = Drive::defaults();
    d.send(O, seg(777_777, 888_888, ACK | PSH, 500, 100));
    d.send(R, seg(888_888, 777_877, ACK, 500, 0));
    let ctx = Ctx {
        dir: O,
        confirmed: true,
        seen_reply: true,
        assured: false,
        now: d.now,
        expires: d.expires,
    };
    // Past the receiver's window (bound I, which ends at 777,877 + 500), by a little (the
    // end recorded) and by far (nothing recorded).
    for (seq, len, end) in [(778_378, 100, 778_478), (1_777_877, 1400, 777_877)] {
        let segment = seg(seq, 888_888, ACK | PSH, 500, len);
        let mut general = *d.st();
        let mut fast = *d.st();
        let want = track_general(&mut general, &segment, &ctx, &d.s);
        let got = track_established(&mut fast, &segment, &ctx, &d.s);
        let Decision::Accept(a) = want.decision else {
            panic!("liberal tracking accepts: {want:?}");
        };
        let r = got.expect("answered by the fast path");
        assert_eq!((Some(r.timeout), r.assured), (a.timeout, a.assured));
        assert_eq!(fast, general);
        assert_eq!(fast.side(O).end, end);
    }
}

#[test]
fn pickup_keepalive_reply() {
    // The reply to a keepalive acks one more than the sender's end: td_end is bumped.
    let mut d = Drive::defaults();
    d.s.nf_conntrack_tcp_be_liberal = 0;
    d.send(O, seg(4999, 1000, ACK, 500, 0));
    // Reply-side initialisation happens on its first segment.
    d.send(R, seg(1000, 5000, ACK, 500, 0));
    assert_eq!(d.st().side(O).end, 5000);
}

// ------------------------------------------------------------------ resets

#[test]
fn rst_before_reply_kills() {
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 100, 0));
    assert_eq!(d.send(R, seg(0, 1001, RST | ACK, 0, 0)), V::Killed);
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 100, 0));
    assert_eq!(d.send(O, seg(1001, 0, RST, 0, 0)), V::Killed);
}

#[test]
fn rst_in_established() {
    // oracle: tcp/rst_established_checks
    let mut d = established(64240, 65160);
    d.send(O, seg(1001, 5001, ACK | PSH, 64240, 100));
    d.send(R, seg(5001, 1101, ACK, 65160, 0));
    d.send(R, seg(5001, 1101, ACK | PSH, 65160, 100));
    d.send(O, seg(1101, 5101, ACK, 64240, 0));
    // Before the server's highest ACK: invalid.
    assert_eq!(d.send(O, seg(1051, 0, RST, 0, 0)), V::Inv);
    // In window but not exact: accepted with a short timeout, state kept.
    assert_eq!(d.send(O, seg(1111, 0, RST, 0, 0)), V::Ok(Some(10)));
    assert_eq!(d.state(), "ESTABLISHED");
    d.send(R, seg(5101, 1101, ACK, 65160, 0));
    assert_eq!(d.send(O, seg(1101, 0, RST, 0, 0)), V::Ok(Some(10)));
    assert_eq!(d.state(), "CLOSE");
    // In CLOSE: no more checks.
    assert_eq!(d.send(R, seg(123, 0, RST, 0, 0)), V::Ok(Some(10)));
}

#[test]
fn ignore_invalid_rst_sysctl() {
    let mut d = established(64240, 65160);
    d.s.nf_conntrack_tcp_ignore_invalid_rst = 1;
    d.send(O, seg(1001, 5001, ACK | PSH, 64240, 100));
    d.send(R, seg(5001, 1101, ACK, 65160, 0));
    assert_eq!(d.send(O, seg(1051, 0, RST, 0, 0)), V::Ok(Some(10)));
    assert_eq!(d.state(), "ESTABLISHED");
}

#[test]
fn rst_train() {
    // oracle: tcp/rst_train
    let mut d = established(64240, 65160);
    d.send(R, seg(5001, 1001, ACK | PSH, 65160, 50));
    d.send(O, seg(1001, 5051, ACK, 64240, 0));
    d.send(R, seg(5051, 1001, ACK | PSH, 65160, 19));
    assert_eq!(d.send(R, seg(5070, 0, RST, 0, 0)), V::Ok(Some(10)));
    assert_eq!(d.state(), "CLOSE");
}

#[test]
fn rst_answers_only_the_other_sides_syn() {
    // oracle: tcp/rst_after_own_syn
    // A SYN/ACK acking too little is ignored by the window check: the last segment stays the
    // client's SYN, the last end is still 0.
    let x = 4_285_797_668u32;
    let own = |d: &mut Drive| {
        d.send(O, seg(x, 0, SYN, 1024, 0));
        assert_eq!(
            d.send(R, seg(9000, x.wrapping_sub(66_000), SYN | ACK, 65535, 0)),
            V::Ign
        );
    };
    // The client's own RST (ack 0 = last end) is not an answer: checked, far behind, ignored.
    let mut d = Drive::defaults();
    own(&mut d);
    assert_eq!(
        d.send(O, seg(x.wrapping_sub(2_000_000), 0, RST, 0, 0)),
        V::Ign
    );
    assert_eq!(d.state(), "SYN_SENT");
    // The server's RST with the same numbers answers the SYN: no window check, closed.
    let mut d = Drive::defaults();
    own(&mut d);
    assert_eq!(
        d.send(R, seg(9001u32.wrapping_sub(2_000_000), 0, RST, 0, 0)),
        V::Ok(Some(10))
    );
    assert_eq!(d.state(), "CLOSE");
}

#[test]
fn rst_in_closing_states_unchecked() {
    let mut d = established(64240, 65160);
    d.send(O, seg(1001, 5001, FIN | ACK, 64240, 0));
    assert_eq!(d.send(R, seg(42, 0, RST, 0, 0)), V::Ok(Some(10)));
    assert_eq!(d.state(), "CLOSE");
}

#[test]
fn reopen_rules() {
    // The side that reset may reopen at once.
    let mut d = established(64240, 65160);
    d.send(O, seg(1001, 5001, RST, 0, 0));
    assert_eq!(d.state(), "CLOSE");
    assert_eq!(d.send(O, seg(50_000, 0, SYN, 100, 0)), V::Ok(Some(120)));
    assert_eq!(d.state(), "SYN_SENT");
    assert!(!d.assured);

    // oracle: tcp/syn_after_server_rst_in_established_ignored
    let mut d = established(64240, 65160);
    d.send(R, seg(5001, 1001, RST, 0, 0));
    assert_eq!(d.send(O, seg(5_000_000, 0, SYN, 100, 0)), V::Ign);
    assert_eq!(d.state(), "CLOSE");
    // The SYN/ACK answering the ignored SYN resynchronises.
    assert_eq!(
        d.send(R, seg(6_000_000, 5_000_001, SYN | ACK, 100, 0)),
        V::Ok(Some(60))
    );
    assert_eq!(d.state(), "SYN_RECV");
    assert_eq!(
        d.send(O, seg(5_000_001, 6_000_001, ACK, 100, 0)),
        V::Ok(Some(432000))
    );
}

#[test]
fn resync_after_ignored_syn_keeps_its_options() {
    let mut d = established(64240, 65160);
    let o = ws(6);
    assert_eq!(
        d.send(O, seg(3_333_333, 0, SYN, 100, 0).with_options(&o)),
        V::Ign
    );
    assert_eq!(
        d.send(
            R,
            seg(4_444_444, 3_333_334, SYN | ACK, 100, 0).with_options(&o)
        ),
        V::Ok(Some(60))
    );
    assert_eq!((d.st().scale(O), d.st().scale(R)), (6, 6));
}

#[test]
fn last_ack_challenge_ack() {
    // oracle: tcp/last_ack_challenge_ack_state
    let mut d = established(64240, 65160);
    d.send(R, seg(5001, 1001, FIN | ACK, 65160, 0));
    d.send(O, seg(1001, 5002, FIN | ACK, 64240, 0));
    assert_eq!(d.state(), "LAST_ACK");
    assert_eq!(d.send(O, seg(200_000, 0, SYN, 100, 0)), V::Ign);
    assert_eq!(d.send(R, seg(5002, 1002, ACK, 65160, 0)), V::Ign);
    assert_eq!(d.state(), "LAST_ACK");
    // The next ACK is the real last one.
    assert_eq!(d.send(R, seg(5002, 1002, ACK, 65160, 0)), V::Ok(Some(120)));
    assert_eq!(d.state(), "TIME_WAIT");
}

#[test]
fn rst_answering_challenge_ack_in_syn_sent() {
    // oracle: tcp/rst_after_reply_syn_sent_challenge
    let mut d = Drive::defaults();
    d.send(O, seg(1000, 0, SYN, 100, 0));
    assert_eq!(d.send(R, seg(99_999, 123_456, ACK, 100, 0)), V::Ign);
    assert_eq!(d.send(O, seg(123_456, 0, RST, 0, 0)), V::Ok(Some(10)));
    assert_eq!(d.state(), "CLOSE");
}

// ------------------------------------------------------------------ timeouts

#[test]
fn retransmissions_shorten_timeout() {
    // oracle: tcp/retrans_max, tcp/retrans_below_max
    let mut d = established(64240, 65160);
    d.s.nf_conntrack_tcp_timeout_max_retrans = 200;
    d.send(O, seg(1001, 5001, ACK | PSH, 64240, 100));
    let a = seg(5001, 1101, ACK, 65160, 0);
    assert_eq!(d.send(R, a), V::Ok(Some(432000)));
    assert_eq!(d.send(R, a), V::Ok(Some(432000)));
    assert_eq!(d.send(R, a), V::Ok(Some(432000)));
    assert_eq!(d.st().retransmissions(), 2);
    // The third repetition reaches nf_conntrack_tcp_max_retrans.
    assert_eq!(d.send(R, a), V::Ok(Some(200)));
    assert_eq!(d.st().retransmissions(), 3);
    // Anything different resets the count.
    assert_eq!(
        d.send(R, seg(5001, 1101, ACK, 65000, 0)),
        V::Ok(Some(432000))
    );
}

#[test]
fn zero_window_timeout() {
    // oracle: tcp/zero_window_keepalive
    let mut d = established(64240, 65160);
    d.s.nf_conntrack_tcp_timeout_max_retrans = 180;
    d.send(O, seg(1001, 5001, ACK | PSH, 64240, 100));
    assert_eq!(d.send(R, seg(5001, 1101, ACK, 0, 0)), V::Ok(Some(180)));
    // A zero-window probe with an old byte is in window; its own window is not zero.
    assert_eq!(
        d.send(O, seg(1100, 5001, ACK | PSH, 64240, 1)),
        V::Ok(Some(432000))
    );
    assert_eq!(d.send(R, seg(5001, 1101, ACK, 0, 0)), V::Ok(Some(180)));
}

#[test]
fn out_of_window_fin_rst_lowers_timeout() {
    // oracle: tcp/out_of_window_fin_rst_lowers_timeout, tcp/lower_timeout_needs_120s
    for (established_t, want) in [(432000u32, 250u64), (100, 99)] {
        let s = Sysctl {
            nf_conntrack_tcp_timeout_unacknowledged: 250,
            nf_conntrack_tcp_timeout_established: established_t,
            ..Sysctl::default()
        };
        let mut d = Drive::new(s);
        d.send(O, seg(1000, 0, SYN, 60000, 0));
        d.send(R, seg(5000, 1001, SYN | ACK, 60000, 0));
        d.send(O, seg(1001, 5001, ACK, 60000, 0));
        assert_eq!(d.send(O, seg(9_001_001, 5001, FIN | ACK, 60000, 0)), V::Inv);
        assert_eq!(d.send(R, seg(9_005_001, 0, RST, 0, 0)), V::Inv);
        assert_eq!(d.left(), want);
    }
}

#[test]
fn unacknowledged_and_close_timeouts() {
    let s = Sysctl {
        nf_conntrack_tcp_timeout_unacknowledged: 250,
        nf_conntrack_tcp_timeout_close: 7,
        ..Sysctl::default()
    };
    let mut d = Drive::new(s);
    d.send(O, seg(1000, 0, SYN, 60000, 0));
    d.send(R, seg(5000, 1001, SYN | ACK, 60000, 0));
    d.send(O, seg(1001, 5001, ACK, 60000, 0));
    assert_eq!(d.send(O, seg(1001, 5001, ACK, 60000, 10)), V::Ok(Some(250)));
    // Unacknowledged data never lengthens a shorter timeout.
    assert_eq!(
        d.send(O, seg(1011, 5001, FIN | ACK, 60000, 0)),
        V::Ok(Some(120))
    );
    assert_eq!(d.send(R, seg(5001, 1001, RST, 0, 0)), V::Ok(Some(7)));
}
