//! The SANE helper's reading (the kernel's `nf_conntrack_sane`): a scanner client's
//! `SANE_NET_START` request, answered with success, announces the port of the data connection
//! the client then opens to the server.
//!
//! Only established connections are read. A client segment of exactly eight bytes is a
//! request: its first word says whether it is `SANE_NET_START` (7). The server's next segment
//! answers it: a successful status, a zero word, then the port.
//!
//! ```
//! use ctrack_helpers::sane::Sane;
//! let mut s = Sane::default();
//! s.client(&[0, 0, 0, 7, 0, 0, 0, 1]);
//! assert_eq!(s.server(&[0, 0, 0, 0, 0, 0, 0x1f, 0x40]), Some(8000));
//! assert_eq!(s.server(&[0, 0, 0, 0, 0, 0, 0x1f, 0x40]), None, "one reply per request");
//! ```

/// The `SANE_NET_START` remote procedure.
const NET_START: u32 = 7;

/// What the helper remembers of a control connection: whether a start was requested.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sane {
    start_requested: bool,
}

impl Sane {
    /// Reads a client segment's payload.
    pub fn client(&mut self, payload: &[u8]) {
        if let Ok(req) = <[u8; 8]>::try_from(payload) {
            let code = u32::from_be_bytes([req[0], req[1], req[2], req[3]]);
            self.start_requested = code == NET_START;
        }
    }

    /// Reads a server segment's payload: the data port it announces, if any.
    pub fn server(&mut self, payload: &[u8]) -> Option<u16> {
        if !std::mem::take(&mut self.start_requested) {
            return None;
        }
        let r: &[u8; 8] = payload.first_chunk()?;
        let ok = r[..4] == [0; 4] && r[4..6] == [0; 2];
        ok.then(|| u16::from_be_bytes([r[6], r[7]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies() {
        let mut s = Sane::default();
        // Not a start, or not eight bytes: nothing (a wrong length keeps what was asked).
        s.client(&[0, 0, 0, 2, 0, 0, 0, 1]);
        assert_eq!(s.server(&[0; 8]), None);
        s.client(&[0, 0, 0, 7, 0, 0, 0, 1]);
        s.client(&[0, 0, 0, 2, 0, 0, 0, 1, 9]);
        // A failed status, a nonzero middle word or a short reply: nothing, and the request
        // is answered all the same.
        assert_eq!(s.server(&[0, 0, 0, 1, 0, 0, 0, 80]), None);
        assert_eq!(s.server(&[0, 0, 0, 0, 0, 0, 0, 80]), None);
        s.client(&[0, 0, 0, 7, 0, 0, 0, 1]);
        assert_eq!(s.server(&[0, 0, 0, 0, 0, 1, 0, 80]), None);
        s.client(&[0, 0, 0, 7, 0, 0, 0, 1]);
        assert_eq!(s.server(&[0, 0, 0, 0, 0, 0, 0]), None);
        s.client(&[0, 0, 0, 7, 0, 0, 0, 1]);
        assert_eq!(s.server(&[0, 0, 0, 0, 0, 0, 0, 80, 1, 2]), Some(80));
    }
}
