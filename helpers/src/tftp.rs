//! The TFTP helper's reading (the kernel's `nf_conntrack_tftp`): a read or write request
//! announces the transfer, which the server answers from a port of its own.
//!
//! ```
//! assert!(ctrack_helpers::tftp::is_request(b"\x00\x01file\x00octet\x00"));
//! assert!(!ctrack_helpers::tftp::is_request(b"\x00\x03\x00\x01data"));
//! ```

/// Read request opcode.
const RRQ: u16 = 1;
/// Write request opcode.
const WRQ: u16 = 2;

/// True when a UDP payload is a read or write request (opcode 1 or 2).
pub fn is_request(payload: &[u8]) -> bool {
    matches!(
        payload.first_chunk::<2>().map(|o| u16::from_be_bytes(*o)),
        Some(RRQ | WRQ)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn opcodes() {
        assert!(super::is_request(&[0, 2]));
        assert!(!super::is_request(&[0]));
        assert!(!super::is_request(&[]));
        assert!(!super::is_request(&[1, 1]));
        assert!(!super::is_request(&[0, 5, 0]));
    }
}
