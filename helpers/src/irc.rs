//! The IRC helper's reading (the kernel's `nf_conntrack_irc`): a client's `PRIVMSG` carrying a
//! CTCP `DCC` offer announces a connection to the client's own address and port.
//!
//! Only client-to-server data of an established connection is read (the engine checks that),
//! at most its first 4,095 bytes. Leading blanks and line ends are skipped; the message must
//! then start with `PRIVMSG ` (any case), and its first ` :` must open `\x01DCC ` followed by
//! one of `SEND `, `CHAT `, `MOVE `, `TSEND `, `SCHAT ` (exact case), an argument, the
//! address as one decimal number and the port, with a newline somewhere after the argument.
//!
//! ```
//! use ctrack_helpers::irc::offer;
//! let line = b"PRIVMSG bob :\x01DCC SEND f.txt 167772161 5000 12\x01\r\n";
//! assert_eq!(offer(line), Some(([10, 0, 0, 1], 5000)));
//! assert_eq!(offer(b"NOTICE bob :\x01DCC SEND f 167772161 5000\x01\r\n"), None);
//! ```

/// Most bytes of a segment read.
const MAX_SEARCH: usize = 4095;

/// The DCC kinds, in the order they are tried.
const KINDS: [&[u8]; 5] = [b"SEND ", b"CHAT ", b"MOVE ", b"TSEND ", b"SCHAT "];

/// The decimal number at the start of `s` (as many digits as there are, wrapping like an
/// unsigned long) and how many bytes it took.
fn number(s: &[u8]) -> (u64, usize) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let v = s[..n].iter().fold(0u64, |v, d| {
        v.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
    });
    (v, n)
}

/// The address and port of a DCC offer (after its kind): `None` when it cannot be read.
fn dcc_target(data: &[u8], from: usize) -> Option<([u8; 4], u64)> {
    let limit = data.len();
    // Past the first blank (the file name or "chat"), with room left for an address, a port
    // and the line end.
    let mut at = from;
    loop {
        let b = *data.get(at)?;
        at += 1;
        if b == b' ' {
            break;
        }
        if at + 12 > limit {
            return None;
        }
    }
    // A newline must follow somewhere, as the numbers are read up to the first non-digit.
    if !data.get(at..)?.contains(&b'\n') {
        return None;
    }
    let (ip, n) = number(&data[at..]);
    at += n;
    while data.get(at) == Some(&b' ') {
        if at + 1 >= limit {
            return None;
        }
        at += 1;
    }
    let (port, _) = number(data.get(at..)?);
    Some(((ip as u32).to_be_bytes(), port))
}

/// The first DCC offer of a client's segment that can be read, as (address, port), whatever
/// its address: the helper acts on it, and when its address is not the client's or its port is
/// zero, the rest of the segment is not read (kernels before 2026 read on).
pub fn offer(payload: &[u8]) -> Option<([u8; 4], u16)> {
    let data = &payload[..payload.len().min(MAX_SEARCH)];
    let limit = data.len();
    let mut at = 0;
    while at + 10 < limit && matches!(data[at], b' ' | b'\r' | b'\n') {
        at += 1;
    }
    if at + 10 < limit {
        if !data[at..at + 8].eq_ignore_ascii_case(b"PRIVMSG ") {
            return None;
        }
        at += 8;
    }
    while at + 26 < limit {
        if &data[at..at + 2] != b" :" {
            at += 1;
            continue;
        }
        at += 2;
        if &data[at..at + 5] != b"\x01DCC " {
            return None;
        }
        at += 5;
        for kind in KINDS {
            if !data[at..].starts_with(kind) {
                continue;
            }
            // The kernel moves past a kind that matches even when its offer is unreadable:
            // the next kinds are tried from there.
            at += kind.len();
            if let Some((ip, port)) = dcc_target(data, at) {
                return Some((ip, port as u16));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_forms() {
        let ip = u32::from_be_bytes([192, 168, 1, 9]);
        for kind in ["SEND f", "CHAT chat", "MOVE f", "TSEND f", "SCHAT chat"] {
            let m = format!("privmsg bob :\x01DCC {kind} {ip} 6000\x01\n");
            assert_eq!(
                offer(m.as_bytes()),
                Some(([192, 168, 1, 9], 6000)),
                "{kind}"
            );
        }
        // Leading line ends are skipped; the port wraps to 16 bits.
        let m = format!("\r\n PRIVMSG bob :\x01DCC SEND f {ip}  70000\x01\n");
        assert_eq!(
            offer(m.as_bytes()),
            Some(([192, 168, 1, 9], 70000u32 as u16))
        );
    }

    #[test]
    fn refused_forms() {
        let ip = u32::from_be_bytes([10, 0, 0, 1]);
        for m in [
            format!("NOTICE bob :\x01DCC SEND f {ip} 6000\x01\n"),
            format!("PRIVMSG bob :hello \x01DCC SEND f {ip} 6000\x01\n"),
            format!("PRIVMSG bob :\x01dcc SEND f {ip} 6000\x01\n"),
            format!("PRIVMSG bob :\x01DCC send f {ip} 6000\x01\n"),
            format!("PRIVMSG bob :\x01DCC SEND f {ip} 6000\x01"),
            "PRIVMSG bob :\x01DCC SEND f 1 2\x01\n".to_string(),
        ] {
            assert_eq!(offer(m.as_bytes()), None, "{m:?}");
        }
    }

    #[test]
    fn any_bytes_are_read_without_panic() {
        let base = b"PRIVMSG bob :\x01DCC SEND file 167772161 5000 100\x01\r\n".to_vec();
        for cut in 0..=base.len() {
            let _ = offer(&base[..cut]);
            for i in 0..cut {
                let mut m = base[..cut].to_vec();
                m[i] ^= 0x5a;
                let _ = offer(&m);
            }
        }
        let _ = offer(&vec![b' '; 10_000]);
    }
}
