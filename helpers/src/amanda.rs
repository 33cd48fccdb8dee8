//! The Amanda helper's reading (the kernel's `nf_conntrack_amanda`): the server's reply to a
//! backup request, `CONNECT DATA p1 MESG p2 INDEX p3` up to a newline, announces the TCP
//! ports the client is to connect to.
//!
//! Only replies (server to client) are read. After the first `CONNECT ` and before the next
//! newline, the first `DATA `, `MESG `, `INDEX ` and `STATE ` are looked up in that order,
//! each followed by a port of at most five digits (taken modulo 2^16); a port that reads as
//! zero ends the reading.
//!
//! ```
//! use ctrack_helpers::amanda::ports;
//! let p: Vec<u16> = ports(b"CONNECT DATA 50001 MESG 50002 INDEX 50003\n").collect();
//! assert_eq!(p, [50001, 50002, 50003]);
//! assert_eq!(ports(b"CONNECT DATA 50001").next(), None, "no newline");
//! ```

/// The keywords whose ports are announced, in the order they are looked up.
const KEYWORDS: [&[u8]; 4] = [b"DATA ", b"MESG ", b"INDEX ", b"STATE "];

/// Where `needle` first occurs in `hay`, in time linear in `hay` (a reply may be a whole
/// 64 KiB datagram: comparing the needle at every offset took about 100 instructions a byte).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The ports a reply announces (at most one per keyword), in order; read without allocating.
pub fn ports(payload: &[u8]) -> impl Iterator<Item = u16> {
    let mut out = [0u16; KEYWORDS.len()];
    let n = read_ports(payload, &mut out, find);
    out.into_iter().take(n)
}

/// [`ports`] into `out`, returning how many, with `find` as the search.
#[inline(always)]
fn read_ports(
    payload: &[u8],
    out: &mut [u16; KEYWORDS.len()],
    find: impl Fn(&[u8], &[u8]) -> Option<usize>,
) -> usize {
    let mut found = 0;
    let Some(c) = find(payload, b"CONNECT ") else {
        return found;
    };
    let start = c + 8;
    let Some(nl) = find(&payload[start..], b"\n") else {
        return found;
    };
    let line = &payload[start..start + nl];
    for kw in KEYWORDS {
        let Some(k) = find(line, kw) else {
            continue;
        };
        let digits = &line[k + kw.len()..];
        let digits = &digits[..digits.len().min(5)];
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        let v = digits[..n]
            .iter()
            .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
        let port = v as u16;
        if port == 0 {
            break;
        }
        out[found] = port;
        found += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    fn ports(payload: &[u8]) -> Vec<u16> {
        super::ports(payload).collect()
    }

    #[test]
    fn replies() {
        assert_eq!(ports(b"junk CONNECT MESG 7 DATA 8 STATE 9\n"), [8, 7, 9]);
        // A zero port ends the reading; ports wrap to 16 bits; keywords after the newline
        // do not count.
        assert_eq!(ports(b"CONNECT DATA 0 MESG 5\n"), Vec::<u16>::new());
        assert_eq!(ports(b"CONNECT DATA 70000\n"), [70000u32 as u16]);
        assert_eq!(ports(b"CONNECT DATA 1\nMESG 2\n"), [1]);
        assert!(ports(b"CONNECT\n").is_empty());
        assert!(ports(b"").is_empty());
    }

    /// The reading with the byte-at-a-time search it had.
    fn model(payload: &[u8]) -> Vec<u16> {
        let mut out = [0u16; super::KEYWORDS.len()];
        let n = super::read_ports(payload, &mut out, |hay, needle| {
            hay.windows(needle.len()).position(|w| w == needle)
        });
        out[..n].to_vec()
    }

    const WORDS: [&[u8]; 10] = [
        b"CONNECT ",
        b"DATA ",
        b"MESG ",
        b"INDEX ",
        b"STATE ",
        b"\n",
        b" ",
        b"7",
        b"65535",
        b"C",
    ];

    proptest::proptest! {
        #[test]
        fn reads_as_the_byte_loop_did(
            words in proptest::collection::vec(proptest::sample::select(&WORDS[..]), 0..40),
            pad in 0usize..300,
        ) {
            let mut m = vec![b'x'; pad];
            m.extend(words.concat());
            proptest::prop_assert_eq!(ports(&m), model(&m));
        }
    }

    #[test]
    fn any_bytes_are_read_without_panic() {
        let base = b"CONNECT DATA 50001 MESG 50002 INDEX 50003 STATE 50004\n";
        for cut in 0..=base.len() {
            for i in 0..cut {
                let mut m = base[..cut].to_vec();
                m[i] ^= 0x21;
                let _ = ports(&m);
            }
        }
    }
}
