//! The `net.netfilter.*` switches and timeouts, by name, with Linux's defaults.
//!
//! Every knob is a row of [`SYSCTLS`]: its name, its default, the range Linux accepts and the
//! field of [`Sysctl`] it sets. Timeouts are whole seconds, as the `/proc/sys` files show them.

use std::fmt;

/// How a value is read and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A timeout in seconds.
    Seconds,
    /// A switch: 0 or 1.
    Switch,
    /// A count or size.
    Count,
}

/// One row of the sysctl table.
#[derive(Clone, Copy)]
pub struct SysctlDef {
    /// Name without the `net.netfilter.` prefix.
    pub name: &'static str,
    /// Linux's default on a machine like this one.
    pub default: u32,
    /// How the value is checked.
    pub kind: Kind,
    /// Smallest accepted value.
    pub min: u32,
    /// Largest accepted value.
    pub max: u32,
    get: fn(&Sysctl) -> u32,
    set: fn(&mut Sysctl, u32),
}

impl fmt::Debug for SysctlDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SysctlDef")
            .field("name", &self.name)
            .field("default", &self.default)
            .finish()
    }
}

/// Largest timeout the kernel stores in jiffies without overflow (`INT_MAX / HZ`, HZ 250).
const MAX_SECS: u32 = (i32::MAX as u32) / 250;

macro_rules! sysctls {
    ($( $field:ident : $name:literal = $default:expr, $kind:ident, $min:expr, $max:expr; )*) => {
        /// Every `net.netfilter` value ctrack honours, each in the unit `/proc/sys` uses.
        ///
        /// ```
        /// use ctrack_protocols::sysctl::Sysctl;
        /// let mut s = Sysctl::default();
        /// assert_eq!(s.nf_conntrack_udp_timeout, 30);
        /// s.set("net.netfilter.nf_conntrack_udp_timeout", "10").unwrap();
        /// assert_eq!(s.get("nf_conntrack_udp_timeout"), Some(10));
        /// ```
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct Sysctl {
            $(
                #[doc = concat!("`net.netfilter.", $name, "`, default ", stringify!($default), ".")]
                pub $field: u32,
            )*
            /// The timeout of TCP's SYN_SENT2 (simultaneous open), 120 s: no sysctl sets it,
            /// only a connection's timeout policy (see [`POLICY_STATES`]).
            pub tcp_timeout_syn_sent2: u32,
        }

        impl Default for Sysctl {
            fn default() -> Self {
                Sysctl {
                    $( $field: $default, )*
                    tcp_timeout_syn_sent2: crate::tcp::SYN_SENT2_TIMEOUT,
                }
            }
        }

        /// The table of every sysctl: name, default, range and setter.
        pub const SYSCTLS: &[SysctlDef] = &[
            $( SysctlDef {
                name: $name,
                default: $default,
                kind: Kind::$kind,
                min: $min,
                max: $max,
                get: |s| s.$field,
                set: |s, v| s.$field = v,
            }, )*
        ];
    };
}

sysctls! {
    nf_conntrack_tcp_timeout_syn_sent: "nf_conntrack_tcp_timeout_syn_sent" = 120, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_timeout_syn_recv: "nf_conntrack_tcp_timeout_syn_recv" = 60, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_timeout_established: "nf_conntrack_tcp_timeout_established" = 432000, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_timeout_fin_wait: "nf_conntrack_tcp_timeout_fin_wait" = 120, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_timeout_close_wait: "nf_conntrack_tcp_timeout_close_wait" = 60, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_timeout_last_ack: "nf_conntrack_tcp_timeout_last_ack" = 30, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_timeout_time_wait: "nf_conntrack_tcp_timeout_time_wait" = 120, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_timeout_close: "nf_conntrack_tcp_timeout_close" = 10, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_timeout_max_retrans: "nf_conntrack_tcp_timeout_max_retrans" = 300, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_timeout_unacknowledged: "nf_conntrack_tcp_timeout_unacknowledged" = 300, Seconds, 0, MAX_SECS;
    nf_conntrack_tcp_loose: "nf_conntrack_tcp_loose" = 1, Switch, 0, 1;
    nf_conntrack_tcp_be_liberal: "nf_conntrack_tcp_be_liberal" = 0, Switch, 0, 1;
    nf_conntrack_tcp_ignore_invalid_rst: "nf_conntrack_tcp_ignore_invalid_rst" = 0, Switch, 0, 1;
    nf_conntrack_tcp_max_retrans: "nf_conntrack_tcp_max_retrans" = 3, Count, 0, 255;
    nf_conntrack_udp_timeout: "nf_conntrack_udp_timeout" = 30, Seconds, 0, MAX_SECS;
    nf_conntrack_udp_timeout_stream: "nf_conntrack_udp_timeout_stream" = 120, Seconds, 0, MAX_SECS;
    nf_conntrack_icmp_timeout: "nf_conntrack_icmp_timeout" = 30, Seconds, 0, MAX_SECS;
    nf_conntrack_icmpv6_timeout: "nf_conntrack_icmpv6_timeout" = 30, Seconds, 0, MAX_SECS;
    nf_conntrack_generic_timeout: "nf_conntrack_generic_timeout" = 600, Seconds, 0, MAX_SECS;
    nf_conntrack_gre_timeout: "nf_conntrack_gre_timeout" = 30, Seconds, 0, MAX_SECS;
    nf_conntrack_gre_timeout_stream: "nf_conntrack_gre_timeout_stream" = 180, Seconds, 0, MAX_SECS;
    nf_conntrack_sctp_timeout_closed: "nf_conntrack_sctp_timeout_closed" = 10, Seconds, 0, MAX_SECS;
    nf_conntrack_sctp_timeout_cookie_wait: "nf_conntrack_sctp_timeout_cookie_wait" = 3, Seconds, 0, MAX_SECS;
    nf_conntrack_sctp_timeout_cookie_echoed: "nf_conntrack_sctp_timeout_cookie_echoed" = 3, Seconds, 0, MAX_SECS;
    nf_conntrack_sctp_timeout_established: "nf_conntrack_sctp_timeout_established" = 210, Seconds, 0, MAX_SECS;
    nf_conntrack_sctp_timeout_shutdown_sent: "nf_conntrack_sctp_timeout_shutdown_sent" = 3, Seconds, 0, MAX_SECS;
    nf_conntrack_sctp_timeout_shutdown_recd: "nf_conntrack_sctp_timeout_shutdown_recd" = 3, Seconds, 0, MAX_SECS;
    nf_conntrack_sctp_timeout_shutdown_ack_sent: "nf_conntrack_sctp_timeout_shutdown_ack_sent" = 3, Seconds, 0, MAX_SECS;
    nf_conntrack_sctp_timeout_heartbeat_sent: "nf_conntrack_sctp_timeout_heartbeat_sent" = 30, Seconds, 0, MAX_SECS;
    nf_conntrack_max: "nf_conntrack_max" = 262144, Count, 0, i32::MAX as u32;
    nf_conntrack_buckets: "nf_conntrack_buckets" = 262144, Count, 1, 1 << 30;
    nf_conntrack_checksum: "nf_conntrack_checksum" = 1, Switch, 0, 1;
    nf_conntrack_expect_max: "nf_conntrack_expect_max" = 4096, Count, 1, i32::MAX as u32;
    nf_conntrack_acct: "nf_conntrack_acct" = 0, Switch, 0, 1;
    nf_conntrack_timestamp: "nf_conntrack_timestamp" = 0, Switch, 0, 1;
    nf_conntrack_events: "nf_conntrack_events" = 2, Count, 0, 2;
    nf_conntrack_log_invalid: "nf_conntrack_log_invalid" = 0, Count, 0, 255;
    nf_conntrack_frag6_timeout: "nf_conntrack_frag6_timeout" = 60, Seconds, 0, MAX_SECS;
    nf_conntrack_frag6_high_thresh: "nf_conntrack_frag6_high_thresh" = 4194304, Count, 0, i32::MAX as u32;
    nf_conntrack_frag6_low_thresh: "nf_conntrack_frag6_low_thresh" = 3145728, Count, 0, i32::MAX as u32;
}

/// One timeout a connection timeout policy (nftables' `ct timeout` object) may set: the
/// protocol it belongs to, nft's name for it, and where it lives in a [`Sysctl`].
#[derive(Clone, Copy)]
pub struct PolicyState {
    /// The IP protocol number (6 for TCP, 17 for UDP).
    pub proto: u8,
    /// nft's name for the state (`established`, `unreplied`, ...).
    pub name: &'static str,
    /// Reads the timeout, in seconds.
    pub get: fn(&Sysctl) -> u32,
    /// Sets it.
    pub set: fn(&mut Sysctl, u32),
}

impl fmt::Debug for PolicyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyState")
            .field("proto", &self.proto)
            .field("name", &self.name)
            .finish()
    }
}

macro_rules! policy_states {
    ($( $proto:literal $name:literal => $field:ident; )*) => {
        /// Every timeout a timeout policy may set, in nft's order per protocol: the TCP states
        /// (with `retrans` and `unack`, the caps of `nf_conntrack_tcp_timeout_max_retrans` and
        /// `nf_conntrack_tcp_timeout_unacknowledged`, and SYN_SENT2, which has no sysctl) and
        /// UDP's `unreplied` and `replied` (`nf_conntrack_udp_timeout` and
        /// `nf_conntrack_udp_timeout_stream`). These are the protocols nftables makes policies
        /// for. The first of each protocol is the timeout a policy gives the packet that
        /// opens a connection (the kernel's slot 0: SYN_SENT's for TCP, whatever state the
        /// packet leads to).
        pub const POLICY_STATES: &[PolicyState] = &[
            $( PolicyState {
                proto: $proto,
                name: $name,
                get: |s| s.$field,
                set: |s, v| s.$field = v,
            }, )*
        ];
    };
}

policy_states! {
    6 "syn_sent" => nf_conntrack_tcp_timeout_syn_sent;
    6 "syn_recv" => nf_conntrack_tcp_timeout_syn_recv;
    6 "established" => nf_conntrack_tcp_timeout_established;
    6 "fin_wait" => nf_conntrack_tcp_timeout_fin_wait;
    6 "close_wait" => nf_conntrack_tcp_timeout_close_wait;
    6 "last_ack" => nf_conntrack_tcp_timeout_last_ack;
    6 "time_wait" => nf_conntrack_tcp_timeout_time_wait;
    6 "close" => nf_conntrack_tcp_timeout_close;
    6 "syn_sent2" => tcp_timeout_syn_sent2;
    6 "retrans" => nf_conntrack_tcp_timeout_max_retrans;
    6 "unack" => nf_conntrack_tcp_timeout_unacknowledged;
    17 "unreplied" => nf_conntrack_udp_timeout;
    17 "replied" => nf_conntrack_udp_timeout_stream;
}

/// The state named `name` of protocol `proto` in [`POLICY_STATES`].
pub fn policy_state(proto: u8, name: &str) -> Option<&'static PolicyState> {
    POLICY_STATES
        .iter()
        .find(|p| p.proto == proto && p.name == name)
}

/// Why a `name=value` pair was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SysctlError {
    /// No sysctl has that name.
    UnknownName(String),
    /// The value is not a number in the accepted range.
    BadValue {
        /// The sysctl's name.
        name: &'static str,
        /// What was given.
        value: String,
        /// Smallest accepted value.
        min: u32,
        /// Largest accepted value.
        max: u32,
    },
    /// The text had no `=`.
    MissingEquals(String),
    /// The sysctl shapes what a tracker keeps for every connection (counters, creation times,
    /// the event stream), so a running tracker keeps the value it was made with.
    Fixed(&'static str),
}

impl fmt::Display for SysctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlError::UnknownName(n) => {
                write!(f, "unknown sysctl '{n}'; valid names: ")?;
                for (i, d) in SYSCTLS.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(d.name)?;
                }
                Ok(())
            }
            SysctlError::BadValue {
                name,
                value,
                min,
                max,
            } => write!(
                f,
                "bad value '{value}' for sysctl {name}: expected an integer from {min} to {max}"
            ),
            SysctlError::MissingEquals(s) => {
                write!(f, "bad sysctl '{s}': expected NAME=VALUE")
            }
            SysctlError::Fixed(name) => {
                write!(f, "sysctl {name} cannot change once the tracker is made")
            }
        }
    }
}

impl std::error::Error for SysctlError {}

/// Looks a sysctl up by name, with or without the `net.netfilter.` prefix.
pub fn lookup(name: &str) -> Option<&'static SysctlDef> {
    let bare = name.strip_prefix("net.netfilter.").unwrap_or(name);
    SYSCTLS.iter().find(|d| d.name == bare)
}

impl Sysctl {
    /// Sets one value by name (with or without `net.netfilter.`), checking its range.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SysctlError> {
        let def = lookup(name).ok_or_else(|| SysctlError::UnknownName(name.to_string()))?;
        let bad = || SysctlError::BadValue {
            name: def.name,
            value: value.to_string(),
            min: def.min,
            max: def.max,
        };
        let v: u32 = value.trim().parse().map_err(|_| bad())?;
        if v < def.min || v > def.max {
            return Err(bad());
        }
        (def.set)(self, v);
        Ok(())
    }

    /// Sets a value from `NAME=VALUE` text, as `sysctl -w` takes it.
    pub fn apply(&mut self, assignment: &str) -> Result<(), SysctlError> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| SysctlError::MissingEquals(assignment.to_string()))?;
        self.set(name.trim(), value)
    }

    /// Reads one value by name.
    pub fn get(&self, name: &str) -> Option<u32> {
        lookup(name).map(|d| (d.get)(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_table() {
        let s = Sysctl::default();
        for d in SYSCTLS {
            assert_eq!(s.get(d.name), Some(d.default), "{}", d.name);
            assert!(d.default >= d.min && d.default <= d.max, "{}", d.name);
        }
    }

    #[test]
    fn prefix_and_errors() {
        let mut s = Sysctl::default();
        s.apply("net.netfilter.nf_conntrack_tcp_loose=0").unwrap();
        assert_eq!(s.nf_conntrack_tcp_loose, 0);
        let e = s.apply("nf_conntrack_bogus=1").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("nf_conntrack_bogus") && msg.contains("nf_conntrack_tcp_loose"));
        assert!(!msg.contains('\n'));
        assert!(matches!(
            s.apply("nf_conntrack_checksum=2"),
            Err(SysctlError::BadValue { .. })
        ));
        assert!(matches!(
            s.apply("nf_conntrack_checksum"),
            Err(SysctlError::MissingEquals(_))
        ));
        assert!(matches!(
            s.apply("nf_conntrack_udp_timeout=-1"),
            Err(SysctlError::BadValue { .. })
        ));
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in SYSCTLS.iter().enumerate() {
            for b in &SYSCTLS[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }
}
