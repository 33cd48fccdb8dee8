//! RFC 1071 one's-complement sums: a carry-chain loop for headers, a vector loop for payloads.
//!
//! Re-exported by [`crate::packet`], where the header checks use them.

/// Inputs at least this long take the vector loop: below it, the loop's setup and the sum of
/// its lanes cost more than they save.
const WIDE: usize = 256;

/// Bytes per round of the vector loop: eight 32-bit words, one per 64-bit lane.
const BLOCK: usize = 32;

/// Adds `data` to a running RFC 1071 one's-complement sum.
///
/// The running sum is kept in the machine's byte order (words are read as they lie in memory,
/// into accumulators that cannot overflow), which RFC 1071 allows: [`csum_fold`] converts the result back to network order once. Pieces chained
/// through one sum must each start at an even offset of the checksummed data; an odd
/// trailing byte is padded with zero. Add header fields that are numbers, not bytes, with
/// [`csum_add_u32`].
#[inline]
pub fn csum_add(sum: u64, data: &[u8]) -> u64 {
    if data.len() >= WIDE {
        wide(sum, data)
    } else {
        narrow(sum, data)
    }
}

/// `csum_ok(csum_add(sum, data))`, with the long case's check inside its out-of-line call (the
/// short case then needs no stack frame).
#[inline(always)]
pub(crate) fn adds_up(sum: u64, data: &[u8]) -> bool {
    if data.len() >= WIDE {
        wide_ok(sum, data)
    } else {
        csum_ok(narrow(sum, data))
    }
}

/// [`adds_up`] for a long input.
#[inline(never)]
fn wide_ok(sum: u64, data: &[u8]) -> bool {
    csum_ok(wide(sum, data))
}

/// [`csum_add`] one 32-byte block at a time in one carry chain, then word by word: headers
/// and short payloads, and the vector loop's tail.
#[inline(always)]
fn narrow(sum: u64, data: &[u8]) -> u64 {
    let (sum, rest) = blocks(sum, data);
    let mut acc = sum as u128;
    // Under 32 bytes left: up to three whole words, then the tail.
    let word = |k: usize| {
        rest.get(k * 8..k * 8 + 8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    };
    let n = rest.len();
    if n >= 8 {
        acc += word(0) as u128;
        if n >= 16 {
            acc += word(1) as u128;
            if n >= 24 {
                acc += word(2) as u128;
            }
        }
    }
    let mut rest = &rest[n & !7..];
    let mut tail = 0u64;
    if let (1.., Some(last)) = (rest.len(), data.last_chunk::<8>()) {
        // The tail from one load of the last eight bytes, those before it shifted out: the
        // tail starts at a multiple of eight, so each byte keeps its lane, and the missing
        // pad byte of an odd tail comes in as zero.
        let drop = (8 - rest.len() as u32) * 8;
        tail = if cfg!(target_endian = "little") {
            u64::from_ne_bytes(*last) >> drop
        } else {
            u64::from_ne_bytes(*last) << drop
        };
        rest = &[];
    }
    // A short input's tail, in pieces: a 16-bit word may be added in any lane, since
    // 2^16 = 1 (mod 0xffff).
    if let Some((w, r)) = rest.split_first_chunk::<4>() {
        tail += u32::from_ne_bytes(*w) as u64;
        rest = r;
    }
    if let Some((w, r)) = rest.split_first_chunk::<2>() {
        tail += u16::from_ne_bytes(*w) as u64;
        rest = r;
    }
    if let Some(&b) = rest.first() {
        tail += u16::from_ne_bytes([b, 0]) as u64;
    }
    acc += tail as u128;
    let (s, carry) = (acc as u64).overflowing_add((acc >> 64) as u64);
    s + carry as u64
}

/// The 32-byte blocks at the start of `data` added to `sum` in one carry chain (each word's
/// carry goes into the next add, the last one around to the start), and what is left after
/// them.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn blocks(sum: u64, data: &[u8]) -> (u64, &[u8]) {
    use std::arch::x86_64::_addcarry_u64;
    let mut it = data.chunks_exact(32);
    let (mut acc, mut c) = (sum, 0u8);
    for b in &mut it {
        let w = |k: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[k * 8..k * 8 + 8]);
            u64::from_ne_bytes(x)
        };
        c = _addcarry_u64(c, acc, w(0), &mut acc);
        c = _addcarry_u64(c, acc, w(1), &mut acc);
        c = _addcarry_u64(c, acc, w(2), &mut acc);
        c = _addcarry_u64(c, acc, w(3), &mut acc);
    }
    // The end-around carry: 2^64 = 1 (mod 0xffff). Adding it cannot carry again unless the
    // sum was all ones, which it then leaves (all ones + 1 wraps to 0, plus the carry: 1).
    let (s, o) = acc.overflowing_add(u64::from(c));
    (s + u64::from(o), it.remainder())
}

/// [`blocks`] elsewhere: each 64-bit word into a 128-bit accumulator, which a block cannot
/// overflow (its upper half counts the carries, each worth one: 2^64 = 1 mod 0xffff), folded
/// once at the end.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn blocks(sum: u64, data: &[u8]) -> (u64, &[u8]) {
    let mut it = data.chunks_exact(32);
    let mut acc = u128::from(sum);
    for b in &mut it {
        for w in b.chunks_exact(8) {
            let mut x = [0u8; 8];
            x.copy_from_slice(w);
            acc += u128::from(u64::from_ne_bytes(x));
        }
    }
    let (s, carry) = (acc as u64).overflowing_add((acc >> 64) as u64);
    (s + u64::from(carry), it.remainder())
}

/// [`csum_add`] for a long input: AVX2 when the CPU has it, else SSE2 (every x86_64 has it);
/// the portable loop on other architectures.
#[inline(never)]
fn wide(sum: u64, data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `lanes_avx2` only requires AVX2, which the CPU was just found to have;
            // it has no other precondition.
            return unsafe { lanes_avx2(sum, data) };
        }
        // SAFETY: `lanes_sse2` only requires SSE2, which is part of the x86_64 baseline.
        unsafe { lanes_sse2(sum, data) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    lanes(sum, data)
}

/// Finds out, once per process, whether the CPU has the vector unit [`wide`] uses (and the
/// CRC32 instruction SCTP's checksum uses, see [`ctrack_protocols::sctp::checksum_ok`]), so
/// that no packet pays for finding out: the standard library asks with CPUID instructions,
/// which a virtual machine's hypervisor traps (on this project's KVM guests, about 6% of the
/// time `bench --pcap` gave a 3,284-packet capture went there, inside its first long frame).
/// [`crate::Conntrack`] calls it as it is made.
pub(crate) fn detect_cpu() {
    #[cfg(target_arch = "x86_64")]
    let _ =
        std::arch::is_x86_feature_detected!("avx2") | std::arch::is_x86_feature_detected!("sse4.2");
}

/// Bytes per round of the multiply-add loops ([`lanes_avx2`], [`lanes_sse2`]): two cache
/// lines, four 32-byte registers or eight 16-byte ones, one per accumulator.
#[cfg(target_arch = "x86_64")]
const MADD_BLOCK: usize = 128;

/// The multiply-add loops' frame: `data`'s whole [`MADD_BLOCK`]s in runs of `RUN` bytes, each
/// summed by `run` as its 16-bit words less 32,768 each (the words with their top bit flipped,
/// read as signed: what a signed multiply-add of pairs by one sums exactly), then the 32,768s
/// added back once per run; the tail under a block word by word. The result is the exact sum
/// of the 16-bit words as they lie in memory, which is the same one's-complement sum as
/// [`lanes`]' 32-bit words (2^16 = 1 mod 0xffff). `RUN` must keep every 32-bit lane of `run`'s
/// accumulators within a signed 32-bit number (see [`MADD_RUN_AVX2`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn madd_runs<const RUN: usize>(sum: u64, data: &[u8], mut run: impl FnMut(&[u8]) -> i64) -> u64 {
    let (body, rest) = data.split_at(data.len() - data.len() % MADD_BLOCK);
    let mut words = 0u64;
    for r in body.chunks(RUN) {
        let flipped = run(r);
        let n = (r.len() / 2) as i64;
        let (w, carry) = words.overflowing_add((flipped + n * 32_768) as u64);
        words = w + carry as u64;
    }
    let (s, carry) = sum.overflowing_add(words);
    narrow(s + carry as u64, rest)
}

/// Bytes per run of [`lanes_avx2`]: a round of [`MADD_BLOCK`] bytes adds at most 2^16 in
/// magnitude to each lane of each of the four accumulators (-2^16 for two zero words), and the
/// four are added lane by lane at the run's end, so 2^13 rounds (1 MiB) stay within a signed
/// 32-bit lane (a run of zeros reaches -2^31 exactly).
#[cfg(target_arch = "x86_64")]
const MADD_RUN_AVX2: usize = MADD_BLOCK << 13;

/// Bytes per run of [`lanes_sse2`]: as [`MADD_RUN_AVX2`], with eight accumulators of half the
/// width, so half as many rounds (512 KiB).
#[cfg(target_arch = "x86_64")]
const MADD_RUN_SSE2: usize = MADD_BLOCK << 12;

/// [`lanes`] with AVX2's multiply-add of 16-bit words (VPMADDWD), three instructions per 32
/// bytes where widening each 32-bit word to a 64-bit lane takes four, two of them shuffles,
/// which have two of the core's four vector pipes (a 1,420-byte segment in the cache: about
/// 49 cycles against 71 on this project's Zen 4 host). See [`madd_runs`] for the sum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes_avx2(sum: u64, data: &[u8]) -> u64 {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let flip = _mm256_set1_epi16(i16::MIN);
    madd_runs::<MADD_RUN_AVX2>(sum, data, |run| {
        let mut acc = [_mm256_setzero_si256(); 4];
        for b in run.chunks_exact(MADD_BLOCK) {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: `b` holds MADD_BLOCK = 4 * 32 bytes, so the 32 bytes at `k * 32`
                // (k < 4) are in it; the load needs no alignment.
                let x = unsafe { _mm256_loadu_si256(b.as_ptr().add(k * 32).cast()) };
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(_mm256_xor_si256(x, flip), ones));
            }
        }
        let [a, b, c, d] = acc;
        let lanes32 = _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d));
        let lanes64 = _mm256_add_epi64(
            _mm256_cvtepi32_epi64(_mm256_castsi256_si128(lanes32)),
            _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(lanes32)),
        );
        let two = _mm_add_epi64(
            _mm256_castsi256_si128(lanes64),
            _mm256_extracti128_si256::<1>(lanes64),
        );
        _mm_cvtsi128_si64(two) + _mm_extract_epi64::<1>(two)
    })
}

/// [`lanes_avx2`] on SSE2's multiply-add (PMADDWD), which every x86_64 processor has: for the
/// ones without AVX2 (the small Atom and Celeron parts of many routers). Eight accumulators
/// keep as many independent adds in flight. In a microbenchmark on this project's Zen 4 host,
/// kept to SSE2, a 1,420-byte segment took about 105 cycles against 137 for [`lanes`]' loop
/// as the compiler vectorises it for the same baseline.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn lanes_sse2(sum: u64, data: &[u8]) -> u64 {
    use std::arch::x86_64::*;
    let ones = _mm_set1_epi16(1);
    let flip = _mm_set1_epi16(i16::MIN);
    madd_runs::<MADD_RUN_SSE2>(sum, data, |run| {
        let mut acc = [_mm_setzero_si128(); 8];
        for b in run.chunks_exact(MADD_BLOCK) {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: `b` holds MADD_BLOCK = 8 * 16 bytes, so the 16 bytes at `k * 16`
                // (k < 8) are in it; the load needs no alignment.
                let x = unsafe { _mm_loadu_si128(b.as_ptr().add(k * 16).cast()) };
                *a = _mm_add_epi32(*a, _mm_madd_epi16(_mm_xor_si128(x, flip), ones));
            }
        }
        let lanes32 = acc
            .into_iter()
            .fold(_mm_setzero_si128(), |s, a| _mm_add_epi32(s, a));
        // Widened to 64 bits with SSE2 only: each lane beside its sign, then the two halves.
        let sign = _mm_srai_epi32::<31>(lanes32);
        let two = _mm_add_epi64(
            _mm_unpacklo_epi32(lanes32, sign),
            _mm_unpackhi_epi32(lanes32, sign),
        );
        _mm_cvtsi128_si64(two) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(two, two))
    })
}

/// The portable vector loop (the long inputs' on architectures other than x86_64): each 32-bit
/// word of a block goes into its own 64-bit lane (as 2^16 = 1 mod 0xffff, a 32-bit word adds
/// the same as its two 16-bit halves), with no carry between lanes to propagate; the lanes are
/// summed once at the end, and the tail (under a block) word by word.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn lanes(sum: u64, data: &[u8]) -> u64 {
    let (body, rest) = data.split_at(data.len() - data.len() % BLOCK);
    let mut acc = sum as u128;
    // A lane gains under 2^32 per block: after a run of 2^24 blocks, each lane is under 2^56
    // and the eight of them under 2^59.
    for run in body.chunks(BLOCK << 24) {
        let mut lane = [0u64; BLOCK / 4];
        for b in run.chunks_exact(BLOCK) {
            for (l, w) in lane.iter_mut().zip(b.chunks_exact(4)) {
                *l += u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64;
            }
        }
        acc += lane.iter().sum::<u64>() as u128;
    }
    let (s, carry) = (acc as u64).overflowing_add((acc >> 64) as u64);
    narrow(s + carry as u64, rest)
}

/// Adds a 32-bit number (two 16-bit words in network order, e.g. a pseudo-header's protocol
/// plus length) to a running sum from [`csum_add`].
#[inline]
pub fn csum_add_u32(sum: u64, v: u32) -> u64 {
    let (s, carry) = sum.overflowing_add(u32::from_ne_bytes(v.to_be_bytes()) as u64);
    s + carry as u64
}

/// True when a running sum from [`csum_add`] folds to `0xffff`: the checksummed bytes are
/// correct. The same as `csum_fold(sum) == 0xffff` without the folding: every fold step keeps
/// the value modulo `0xffff` (as 2^16 = 1), and only zero folds to zero.
#[inline]
pub fn csum_ok(sum: u64) -> bool {
    sum != 0 && sum.is_multiple_of(0xffff)
}

/// Folds a running sum from [`csum_add`] to the 16-bit one's-complement sum, in network
/// order (a correct packet's checksummed bytes fold to `0xffff`).
#[inline]
pub fn csum_fold(sum: u64) -> u16 {
    let mut s = (sum & 0xffff_ffff) + (sum >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    u16::from_be(s as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward RFC 1071 sum over 16-bit words.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn csum_ok_is_folding_to_all_ones() {
        let mut sums = vec![
            0,
            1,
            0xfffe,
            0xffff,
            0x1_fffe,
            0xffff * 12345,
            u64::MAX - 1,
            u64::MAX,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // Half of them multiples of 0xffff, where the two could disagree.
            sums.extend([x, x - x % 0xffff]);
        }
        for s in sums {
            assert_eq!(csum_ok(s), csum_fold(s) == 0xffff, "{s:#x}");
        }
    }

    #[test]
    fn checksum_matches_reference_for_all_lengths() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8 ^ 0xa5).collect();
        for len in 0..data.len() {
            for start in 0..3 {
                if start + len > data.len() {
                    continue;
                }
                let d = &data[start..start + len];
                assert_eq!(csum_fold(csum_add(0, d)), reference_sum(d), "len {len}");
            }
        }
        // Chained sums of even-length pieces equal the sum of the whole.
        let whole = csum_fold(csum_add(0, &data[..100]));
        let parts = csum_fold(csum_add(csum_add(0, &data[..36]), &data[36..100]));
        assert_eq!(whole, parts);
    }

    /// The word loop's carry chain over 32-byte blocks, from running sums near the top of
    /// the range and over all-ones data (every add carries), against the 16-bit reference.
    #[test]
    fn carry_chain_wraps_around() {
        let mixed: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let ones = [0xffu8; 200];
        let fold16 = |a: u64, b: u16| {
            let mut s = u64::from(csum_fold(a)) + u64::from(b);
            s = (s & 0xffff) + (s >> 16);
            s as u16
        };
        for d in [&mixed[..], &ones[..]] {
            for len in 0..d.len() {
                for start in [0, 1, 0xffff, u64::MAX - 7, u64::MAX - 1, u64::MAX] {
                    let got = csum_fold(narrow(start, &d[..len]));
                    let want = fold16(start, reference_sum(&d[..len]));
                    // 0x0000 and 0xffff are the same number in one's complement.
                    let norm = |x: u16| if x == 0 { 0xffff } else { x };
                    assert_eq!(norm(got), norm(want), "len {len} start {start:#x}");
                }
            }
        }
    }

    /// A vector loop by name.
    type Loop = (&'static str, fn(u64, &[u8]) -> u64);

    /// Every vector loop this build has, each callable here: the one this CPU runs, the
    /// portable one, and on x86_64 SSE2's and (when the CPU has it) AVX2's.
    fn vector_loops() -> Vec<Loop> {
        let loops: Vec<Loop> = vec![("wide", wide), ("portable", |s, d| lanes(s, d))];
        #[cfg(target_arch = "x86_64")]
        let loops = {
            let mut loops = loops;
            // SAFETY: SSE2 is part of the x86_64 baseline.
            loops.push(("sse2", |s, d| unsafe { lanes_sse2(s, d) }));
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (just checked).
                loops.push(("avx2", |s, d| unsafe { lanes_avx2(s, d) }));
            }
            loops
        };
        loops
    }

    /// The vector loops against the word loop, for lengths around their block and threshold
    /// sizes and running sums that carry.
    #[test]
    fn vector_loop_sums_as_the_word_loop_does() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let ones = vec![0xffu8; 5000];
        for (name, f) in vector_loops() {
            for d in [&data[..], &ones[..]] {
                for len in
                    (0..200).chain([255, 256, 257, 383, 384, 385, 1499, 1500, 1501, 4096, 5000])
                {
                    for s in [0, 1, 0xffff, u64::MAX - 7, u64::MAX] {
                        let w = narrow(s, &d[..len]);
                        let v = f(s, &d[..len]);
                        assert_eq!(csum_fold(v), csum_fold(w), "{name} len {len} sum {s:#x}");
                        assert_eq!(csum_ok(v), csum_ok(w), "{name} len {len} sum {s:#x}");
                    }
                }
            }
        }
        // Zero stays zero (no checksum folds from nothing): `csum_ok` tells it apart.
        assert_eq!(csum_add(0, &[0; 300]), 0);
    }

    /// The vector loops over inputs of several runs of their accumulators, of the words that
    /// take them furthest either way (all ones, all zeros) and of mixed ones, against the word
    /// loop.
    #[test]
    fn vector_loop_folds_its_accumulators_between_runs() {
        #[cfg(target_arch = "x86_64")]
        let runs = [MADD_RUN_SSE2, MADD_RUN_AVX2];
        #[cfg(not(target_arch = "x86_64"))]
        let runs = [1 << 20];
        let len = 2 * runs[runs.len() - 1] + 3 * 32 + 17;
        let mixed: Vec<u8> = (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for d in [vec![0xffu8; len], vec![0u8; len], mixed] {
            let ns = runs
                .iter()
                .flat_map(|&r| [r - 1, r, r + 64, r + 128])
                .chain([len]);
            for n in ns {
                for s in [0, u64::MAX - 3] {
                    let want = csum_fold(narrow(s, &d[..n]));
                    for (name, f) in vector_loops() {
                        assert_eq!(csum_fold(f(s, &d[..n])), want, "{name} len {n} sum {s:#x}");
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Any bytes, at any even offset of a chained sum, fold as the 16-bit reference does.
        #[test]
        fn any_input_sums_as_the_reference(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            split in 0usize..1500,
        ) {
            let at = (split * 2).min(data.len() & !1);
            let chained = csum_add(csum_add(0, &data[..at]), &data[at..]);
            proptest::prop_assert_eq!(csum_fold(chained), reference_sum(&data));
        }
    }

    /// The out-of-line vector path as the engine calls it (AVX2 where the CPU, or Miri given
    /// `-C target-feature=+avx2`, has it), and every other vector loop, small enough for Miri.
    #[test]
    fn long_inputs_take_the_vector_path_and_agree() {
        let data: Vec<u8> = (0..1500u32).map(|i| ((i * 40_503) >> 7) as u8).collect();
        for len in [WIDE, WIDE + 37, 1500] {
            for s in [0, u64::MAX] {
                let d = &data[..len];
                assert_eq!(adds_up(s, d), csum_ok(narrow(s, d)), "len {len}");
                for (name, f) in vector_loops() {
                    assert_eq!(
                        csum_fold(f(s, d)),
                        csum_fold(narrow(s, d)),
                        "{name} len {len}"
                    );
                }
            }
        }
    }
}
