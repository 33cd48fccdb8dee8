//! The PPTP helper's reading (the kernel's `nf_conntrack_pptp`): the control connection's
//! session and call states, and the GRE sessions an answered call announces.
//!
//! The client (PNS) opens the control connection to the server (PAC). Only established
//! connections are read, one control message per segment: an 8-byte PPTP header (message
//! type 1, the magic cookie), a 4-byte control header, then a body at least as long as its
//! message type's structure. An outgoing call's reply with "connected", or an incoming call's
//! connect, announces the two GRE directions keyed by the call IDs; a disconnect notice ends
//! them. Out-of-order messages are ignored, never dropped.
//!
//! ```
//! use ctrack_helpers::pptp::{Action, Pptp};
//! fn msg(ty: u16, body: &[u8]) -> Vec<u8> {
//!     let mut m = vec![0, 0, 0, 1, 0x1a, 0x2b, 0x3c, 0x4d];
//!     m.extend_from_slice(&ty.to_be_bytes());
//!     m.extend_from_slice(&[0, 0]);
//!     m.extend_from_slice(body);
//!     m
//! }
//! let mut p = Pptp::default();
//! p.read(true, &msg(1, &[0; 144]));
//! let mut ok = [0u8; 144];
//! ok[2] = 1; // result: OK
//! p.read(false, &msg(2, &ok));
//! let mut call = [0u8; 156];
//! call[..2].copy_from_slice(&0x1111u16.to_be_bytes());
//! p.read(true, &msg(7, &call));
//! let mut reply = [0u8; 20];
//! reply[..2].copy_from_slice(&0x2222u16.to_be_bytes());
//! reply[2..4].copy_from_slice(&0x1111u16.to_be_bytes());
//! reply[4] = 1; // connected
//! assert_eq!(p.read(false, &msg(8, &reply)), Action::ExpectGre { pac: 0x2222, pns: 0x1111 });
//! ```

/// The magic cookie of every PPTP message.
const MAGIC: u32 = 0x1a2b_3c4d;
/// The PPTP message type of control messages.
const CONTROL: u16 = 1;

/// Control message types the helper acts on (the echo, WAN-error and link-info messages
/// are accepted and change nothing).
mod msg {
    pub const START_REQUEST: u16 = 1;
    pub const START_REPLY: u16 = 2;
    pub const STOP_REQUEST: u16 = 3;
    pub const STOP_REPLY: u16 = 4;
    pub const OUT_CALL_REQUEST: u16 = 7;
    pub const OUT_CALL_REPLY: u16 = 8;
    pub const IN_CALL_REQUEST: u16 = 9;
    pub const IN_CALL_REPLY: u16 = 10;
    pub const IN_CALL_CONNECT: u16 = 11;
    pub const CALL_CLEAR_REQUEST: u16 = 12;
    pub const CALL_DISCONNECT_NOTIFY: u16 = 13;
}

/// The least body length of each message type (index: type; 0 for the echo messages and
/// types without a structure, which any length passes).
const BODY: [usize; 16] = [
    0, 144, 144, 4, 4, 0, 0, 156, 20, 208, 12, 16, 4, 136, 28, 12,
];

/// The result code meaning success in start, stop, outgoing-call and incoming-call replies.
const OK: u8 = 1;

/// Control session states, in the kernel's order (the replies compare them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Session {
    #[default]
    None,
    Error,
    StopRequested,
    Requested,
    Confirmed,
}

/// Call states, in the kernel's order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Call {
    #[default]
    None,
    OutRequested,
    OutConfirmed,
    InRequested,
    InReplied,
    InConfirmed,
    ClearRequested,
}

/// What a control message asks of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Expect the call's GRE: client to server keyed (`pns` source, `pac` destination), server
    /// to client keyed (`pac`, `pns`).
    ExpectGre {
        /// The server's call ID.
        pac: u16,
        /// The client's call ID.
        pns: u16,
    },
    /// The call is over: its GRE connections and expectations go (keys as remembered).
    Disconnect {
        /// The server's call ID.
        pac: u16,
        /// The client's call ID.
        pns: u16,
    },
}

/// What the helper keeps per control connection (the kernel's `nf_ct_pptp_master`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pptp {
    session: Session,
    call: Call,
    pac_call_id: u16,
    pns_call_id: u16,
}

fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |w| u16::from_be_bytes([w[0], w[1]]))
}

impl Pptp {
    /// The server's and the client's call IDs as last announced.
    pub fn call_ids(&self) -> (u16, u16) {
        (self.pac_call_id, self.pns_call_id)
    }

    /// Reads a segment's payload, from the client (`from_client`) or the server.
    pub fn read(&mut self, from_client: bool, payload: &[u8]) -> Action {
        let Some(hdr) = payload.get(..12) else {
            return Action::None;
        };
        let magic = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if be16(hdr, 2) != CONTROL || magic != MAGIC {
            return Action::None;
        }
        let ty = be16(hdr, 8);
        let body = &payload[12..];
        if BODY.get(usize::from(ty)).is_some_and(|&n| body.len() < n) {
            return Action::None;
        }
        if from_client {
            self.client_message(ty, body);
            Action::None
        } else {
            self.server_message(ty, body)
        }
    }

    fn client_message(&mut self, ty: u16, b: &[u8]) {
        match ty {
            msg::START_REQUEST if self.session == Session::None => {
                self.session = Session::Requested;
            }
            msg::STOP_REQUEST => self.session = Session::StopRequested,
            msg::OUT_CALL_REQUEST if self.session == Session::Confirmed => {
                self.call = Call::OutRequested;
                self.pns_call_id = be16(b, 0);
            }
            msg::IN_CALL_REPLY
                if matches!(self.call, Call::InRequested | Call::InReplied)
                    && self.pac_call_id == be16(b, 2) =>
            {
                if b.get(4) == Some(&OK) {
                    self.call = Call::InReplied;
                    self.pns_call_id = be16(b, 0);
                } else {
                    self.call = Call::None;
                }
            }
            msg::CALL_CLEAR_REQUEST if self.session == Session::Confirmed => {
                self.call = Call::ClearRequested;
            }
            _ => {}
        }
    }

    fn server_message(&mut self, ty: u16, b: &[u8]) -> Action {
        let confirmed = self.session == Session::Confirmed;
        match ty {
            msg::START_REPLY if self.session >= Session::Requested => {
                self.session = if b.get(2) == Some(&OK) {
                    Session::Confirmed
                } else {
                    Session::Error
                };
            }
            msg::STOP_REPLY if self.session <= Session::StopRequested => {
                self.session = if b.first() == Some(&OK) {
                    Session::None
                } else {
                    Session::Error
                };
            }
            msg::OUT_CALL_REPLY
                if confirmed
                    && matches!(self.call, Call::OutRequested | Call::OutConfirmed)
                    && self.pns_call_id == be16(b, 2) =>
            {
                if b.get(4) == Some(&OK) {
                    self.call = Call::OutConfirmed;
                    self.pac_call_id = be16(b, 0);
                    return Action::ExpectGre {
                        pac: self.pac_call_id,
                        pns: self.pns_call_id,
                    };
                }
                self.call = Call::None;
            }
            msg::IN_CALL_REQUEST if confirmed => {
                self.call = Call::InRequested;
                self.pac_call_id = be16(b, 0);
            }
            msg::IN_CALL_CONNECT
                if confirmed
                    && matches!(self.call, Call::InReplied | Call::InConfirmed)
                    && self.pns_call_id == be16(b, 0) =>
            {
                self.call = Call::InConfirmed;
                return Action::ExpectGre {
                    pac: self.pac_call_id,
                    pns: self.pns_call_id,
                };
            }
            msg::CALL_DISCONNECT_NOTIFY => {
                self.call = Call::None;
                return Action::Disconnect {
                    pac: self.pac_call_id,
                    pns: self.pns_call_id,
                };
            }
            _ => {}
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, 0x1a, 0x2b, 0x3c, 0x4d];
        v.extend_from_slice(&ty.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(body);
        v
    }

    fn body(n: usize, fields: &[(usize, &[u8])]) -> Vec<u8> {
        let mut b = vec![0; n];
        for (at, f) in fields {
            b[*at..*at + f.len()].copy_from_slice(f);
        }
        b
    }

    fn session() -> Pptp {
        let mut p = Pptp::default();
        p.read(true, &m(1, &[0; 144]));
        p.read(false, &m(2, &body(144, &[(2, &[OK])])));
        p
    }

    #[test]
    fn outgoing_call_and_disconnect() {
        let mut p = session();
        p.read(true, &m(7, &body(156, &[(0, &[0x11, 0x11])])));
        // A reply for another call is ignored; a failed one ends the call.
        let other = body(20, &[(0, &[0x22, 0x22]), (2, &[0x99, 0x99]), (4, &[OK])]);
        assert_eq!(p.read(false, &m(8, &other)), Action::None);
        let ok = body(20, &[(0, &[0x22, 0x22]), (2, &[0x11, 0x11]), (4, &[OK])]);
        assert_eq!(
            p.read(false, &m(8, &ok)),
            Action::ExpectGre {
                pac: 0x2222,
                pns: 0x1111
            }
        );
        assert_eq!(
            p.read(false, &m(13, &[0; 136])),
            Action::Disconnect {
                pac: 0x2222,
                pns: 0x1111
            }
        );
    }

    #[test]
    fn incoming_call() {
        let mut p = session();
        p.read(false, &m(9, &body(208, &[(0, &[0x33, 0x33])])));
        p.read(
            true,
            &m(
                10,
                &body(12, &[(0, &[0x44, 0x44]), (2, &[0x33, 0x33]), (4, &[OK])]),
            ),
        );
        assert_eq!(
            p.read(false, &m(11, &body(16, &[(0, &[0x44, 0x44])]))),
            Action::ExpectGre {
                pac: 0x3333,
                pns: 0x4444
            }
        );
    }

    #[test]
    fn refused_forms() {
        // Before the session is confirmed, calls are ignored.
        let mut p = Pptp::default();
        p.read(true, &m(7, &body(156, &[(0, &[0x11, 0x11])])));
        let ok = body(20, &[(0, &[0x22, 0x22]), (2, &[0x11, 0x11]), (4, &[OK])]);
        assert_eq!(p.read(false, &m(8, &ok)), Action::None);
        // Short bodies, a wrong cookie, a management message: ignored.
        let mut p = session();
        p.read(true, &m(7, &[0x11, 0x11]));
        assert_eq!(p.read(false, &m(8, &ok)), Action::None);
        p.read(true, &m(7, &body(156, &[(0, &[0x11, 0x11])])));
        let mut bad = m(8, &ok);
        bad[7] = 0;
        assert_eq!(p.read(false, &bad), Action::None);
        let mut mgmt = m(8, &ok);
        mgmt[3] = 2;
        assert_eq!(p.read(false, &mgmt), Action::None);
        assert_ne!(p.read(false, &m(8, &ok)), Action::None);
    }

    #[test]
    fn any_bytes_are_read_without_panic() {
        let base = m(
            8,
            &body(20, &[(0, &[0x22, 0x22]), (2, &[0x11, 0x11]), (4, &[OK])]),
        );
        for cut in 0..=base.len() {
            for i in 0..cut {
                let mut b = base[..cut].to_vec();
                b[i] ^= 0x77;
                let _ = session().read(false, &b);
                let _ = session().read(true, &b);
            }
        }
    }
}
