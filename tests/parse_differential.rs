//! Our zero-copy parser against etherparse on well-formed packets: for anything etherparse
//! builds, both find the same addresses, protocol, ports and payload.

use ctrack::packet::{LinkType, ip_of_frame, parse_ip};
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn same_tuple_as_etherparse(
        v6 in any::<bool>(),
        tcp in any::<bool>(),
        vlan in prop::option::of(0u16..4095),
        mut src in any::<[u8; 16]>(),
        mut dst in any::<[u8; 16]>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // Global unicast IPv6 addresses (the receive path refuses multicast sources and the
        // loopback address, which etherparse would happily build).
        src[0] = 0x20;
        dst[0] = 0x20;
        let l2 = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut src4 = [0u8; 4];
        src4.copy_from_slice(&src[..4]);
        let mut dst4 = [0u8; 4];
        dst4.copy_from_slice(&dst[..4]);
        let mut frame = Vec::new();
        match (v6, tcp) {
            (false, false) => l2.ipv4(src4, dst4, 64).udp(sport, dport).write(&mut frame, &payload),
            (false, true) => l2.ipv4(src4, dst4, 64).tcp(sport, dport, 1, 100).write(&mut frame, &payload),
            (true, false) => l2.ipv6(src, dst, 64).udp(sport, dport).write(&mut frame, &payload),
            (true, true) => l2.ipv6(src, dst, 64).tcp(sport, dport, 1, 100).write(&mut frame, &payload),
        }
        .unwrap();
        if let Some(v) = vlan {
            // Tag it after building: an 802.1Q header between the addresses and the type.
            let tag = [0x81, 0x00, (v >> 8) as u8, v as u8];
            frame.splice(12..12, tag);
        }

        let theirs = SlicedPacket::from_ethernet(&frame).unwrap();
        let ip = ip_of_frame(&frame, LinkType::Ethernet).unwrap();
        let ours = parse_ip(ip).unwrap();
        prop_assert_eq!(ours.v6, v6);
        prop_assert_eq!(ours.src(), if v6 { &src[..] } else { &src4[..] });
        prop_assert_eq!(ours.dst(), if v6 { &dst[..] } else { &dst4[..] });
        let l4 = ours.l4();
        prop_assert_eq!(u16::from_be_bytes([l4[0], l4[1]]), sport);
        prop_assert_eq!(u16::from_be_bytes([l4[2], l4[3]]), dport);
        match theirs.transport {
            Some(TransportSlice::Udp(u)) => {
                prop_assert_eq!(ours.proto, 17);
                prop_assert_eq!(&l4[8..], u.payload());
            }
            Some(TransportSlice::Tcp(t)) => {
                prop_assert_eq!(ours.proto, 6);
                prop_assert_eq!(&l4[t.slice().len() - t.payload().len()..], t.payload());
            }
            other => prop_assert!(false, "etherparse saw {:?}", other),
        }
    }
}
