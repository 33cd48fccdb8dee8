//! Timeout policies: nftables' `ct timeout` objects, and the rules that give connections one.
//!
//! A ruleset gives a connection its own timeouts with a `ct timeout` object (a protocol and
//! some of its states' timeouts) and a rule that says `ct timeout set` for the connection's
//! first packet. From then on every packet of that connection is timed by the policy instead
//! of the sysctls. ctrack takes such rules in [`crate::Config::timeout_rules`]: each matches the
//! first packet of a connection by protocol (TCP or UDP, those nftables makes policies for) and,
//! optionally, destination port.
//!
//! What the kernel does, and ctrack with it:
//! - a policy's states that it does not name take Linux's default timeouts, whatever the
//!   sysctls say (nftables fills them in so when it makes the object), and changing a sysctl
//!   does not change a policy;
//! - the rule acts on a connection only while it is being made (its first packet, NEW or
//!   RELATED); a rule that matches a later packet does nothing;
//! - the first packet's connection then times out after the policy's first timeout of its
//!   protocol (`syn_sent` for TCP, whatever state the packet led to, as when a connection is
//!   picked up mid-stream; `unreplied` for UDP), and each later packet as the policy says for
//!   the state it leads to;
//! - when several rules match, the last one wins, as in a ruleset whose rules each set it in
//!   turn.

use std::fmt;
use std::str::FromStr;

use ctrack_protocols::sysctl::{POLICY_STATES, Sysctl, policy_state};

use crate::tuple::proto;

/// The most timeout rules a tracker honours ([`crate::Config::add_timeout_rule`] refuses more).
pub const MAX_TIMEOUT_RULES: usize = 255;

/// The largest timeout a policy takes, as for the sysctls (`INT_MAX / HZ` seconds, HZ 250).
const MAX_SECS: u32 = (i32::MAX as u32) / 250;

/// A rule that gives the connections whose first packet it matches a timeout policy, as a
/// ruleset's `ct timeout set` does: `PROTO[:PORT]:STATE=SECONDS[,STATE=SECONDS]...`.
///
/// `PROTO` is `tcp` or `udp`; `PORT` the first packet's destination port (any port when left
/// out). The states are nftables' names: for TCP `syn_sent`, `syn_recv`, `established`,
/// `fin_wait`, `close_wait`, `last_ack`, `time_wait`, `close`, `syn_sent2`, `retrans` and
/// `unack`; for UDP `unreplied` and `replied`. The states it does not name take Linux's
/// default timeouts, not the sysctls in force, as nftables makes its objects.
///
/// ```
/// use ctrack::TimeoutRule;
/// let dns: TimeoutRule = "udp:53:unreplied=5,replied=10".parse().unwrap();
/// assert_eq!(dns.port, Some(53));
/// assert_eq!(dns.to_string(), "udp:53:unreplied=5,replied=10");
/// assert!("udp:53:established=5".parse::<TimeoutRule>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutRule {
    /// The IP protocol: 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// The destination port of the connection's first packet; `None` for any.
    pub port: Option<u16>,
    /// The states the policy times, by nftables' name, with their timeouts in seconds.
    pub timeouts: Vec<(&'static str, u32)>,
}

/// Why a timeout rule was refused: one line, naming what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutRuleError(String);

impl fmt::Display for TimeoutRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimeoutRuleError {}

impl FromStr for TimeoutRule {
    type Err = TimeoutRuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| {
            TimeoutRuleError(format!(
                "bad timeout rule '{text}': {why} (expected PROTO[:PORT]:STATE=SECONDS,...)"
            ))
        };
        let mut parts = text.split(':');
        let proto = match parts.next().unwrap_or_default() {
            "tcp" => proto::TCP,
            "udp" => proto::UDP,
            p => return Err(bad(format!("protocol '{p}' is not tcp or udp"))),
        };
        let (port, states) = match (parts.next(), parts.next(), parts.next()) {
            (Some(states), None, None) => (None, states),
            (Some(port), Some(states), None) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| bad(format!("port '{port}' is not a number from 0 to 65535")))?;
                (Some(port), states)
            }
            _ => return Err(bad("too many or too few fields".into())),
        };
        let mut timeouts: Vec<(&'static str, u32)> = Vec::new();
        for pair in states.split(',') {
            let (name, secs) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("'{pair}' is not STATE=SECONDS")))?;
            let state = policy_state(proto, name).ok_or_else(|| {
                let names: Vec<_> = POLICY_STATES
                    .iter()
                    .filter(|s| s.proto == proto)
                    .map(|s| s.name)
                    .collect();
                bad(format!(
                    "no state '{name}' for this protocol (states: {})",
                    names.join(", ")
                ))
            })?;
            let secs = secs
                .parse::<u32>()
                .ok()
                .filter(|s| *s <= MAX_SECS)
                .ok_or_else(|| {
                    bad(format!(
                        "timeout '{secs}' of {name} is not a number of seconds from 0 to {MAX_SECS}"
                    ))
                })?;
            // A state named twice keeps its last value, as nft's parser leaves it.
            timeouts.retain(|(n, _)| *n != state.name);
            timeouts.push((state.name, secs));
        }
        Ok(TimeoutRule {
            proto,
            port,
            timeouts,
        })
    }
}

impl fmt::Display for TimeoutRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // (A rule built field by field may name another protocol: it matches nothing, and
        // prints its number.)
        match self.proto {
            proto::TCP => f.write_str("tcp")?,
            proto::UDP => f.write_str("udp")?,
            n => write!(f, "{n}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (i, (name, secs)) in self.timeouts.iter().enumerate() {
            write!(f, "{}{name}={secs}", if i == 0 { ':' } else { ',' })?;
        }
        Ok(())
    }
}

/// The error for a rule past the [`MAX_TIMEOUT_RULES`]th.
pub(crate) fn too_many(rule: &str) -> TimeoutRuleError {
    TimeoutRuleError(format!(
        "timeout rule '{rule}' refused: a tracker takes at most {MAX_TIMEOUT_RULES}"
    ))
}

/// A tracker's timeout rules, made: which rule a new connection takes, and each policy's
/// timeouts as the kernel fixes them when the policy is made.
#[derive(Debug, Default)]
pub(crate) struct Policies {
    /// Each rule's protocol and port.
    matches: Vec<(u8, Option<u16>)>,
    /// Each rule's policy: Linux's defaults, with the policy's own timeouts.
    made: Vec<Sysctl>,
}

impl Policies {
    /// The rules (at most [`MAX_TIMEOUT_RULES`]: the rest are left out), their policies made
    /// as nftables makes them: Linux's default timeouts but for those each one names.
    pub(crate) fn new(rules: &[TimeoutRule]) -> Policies {
        let rules = &rules[..rules.len().min(MAX_TIMEOUT_RULES)];
        let made = rules
            .iter()
            .map(|r| {
                let mut s = Sysctl::default();
                for (name, secs) in &r.timeouts {
                    if let Some(st) = policy_state(r.proto, name) {
                        (st.set)(&mut s, *secs);
                    }
                }
                s
            })
            .collect();
        Policies {
            matches: rules.iter().map(|r| (r.proto, r.port)).collect(),
            made,
        }
    }

    /// Whether there are any rules.
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.matches.is_empty()
    }

    /// The policy (1 up; 0 for none) of a connection whose first packet has protocol `proto`
    /// and destination port `dport`: the last rule that matches it.
    pub(crate) fn of(&self, proto: u8, dport: u16) -> u8 {
        self.matches
            .iter()
            .rposition(|&(p, port)| p == proto && port.is_none_or(|port| port == dport))
            .map_or(0, |i| i as u8 + 1)
    }

    /// The sysctls a connection with each policy is tracked by, given those in force `live`:
    /// `live` with the policy's protocol's timeouts as the policy holds them.
    pub(crate) fn in_force(&self, live: &Sysctl) -> Box<[Sysctl]> {
        self.matches
            .iter()
            .zip(&self.made)
            .map(|(&(proto, _), made)| {
                let mut s = live.clone();
                for st in POLICY_STATES.iter().filter(|st| st.proto == proto) {
                    (st.set)(&mut s, (st.get)(made));
                }
                s
            })
            .collect()
    }

    /// The timeout, in seconds, policy `p` (1 up) gives the packet that opens a connection:
    /// its protocol's first in [`POLICY_STATES`].
    pub(crate) fn first_timeout(&self, p: u8) -> Option<u32> {
        let i = usize::from(p).checked_sub(1)?;
        let (proto, _) = *self.matches.get(i)?;
        let st = POLICY_STATES.iter().find(|st| st.proto == proto)?;
        Some((st.get)(&self.made[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_print_back() {
        for text in [
            "udp:53:unreplied=5,replied=10",
            "tcp:established=600",
            "tcp:22:syn_sent=3,syn_sent2=4,retrans=5,unack=6",
            "udp:0:replied=0",
        ] {
            let r: TimeoutRule = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
        }
        let r: TimeoutRule = "tcp:close=1,close=2".parse().unwrap();
        assert_eq!(r.timeouts, vec![("close", 2)]);
        let icmp = TimeoutRule {
            proto: 1,
            port: None,
            timeouts: vec![("timeout", 5)],
        };
        assert_eq!(icmp.to_string(), "1:timeout=5");
        // Such a rule gives no connection a policy.
        let p = Policies::new(&[icmp]);
        assert_eq!(p.first_timeout(p.of(1, 0)), None);
    }

    #[test]
    fn bad_rules_are_one_line_errors() {
        for text in [
            "",
            "icmp:timeout=5",
            "udp:53:established=5",
            "tcp:99999:established=5",
            "tcp:22:established",
            "tcp:22:established=-1",
            "tcp:22:established=9000000",
            "tcp:1:2:established=5",
            "udp",
        ] {
            let e = text.parse::<TimeoutRule>().unwrap_err().to_string();
            assert!(e.contains(text) && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_last_matching_rule_wins_and_policies_keep_linux_defaults() {
        let rules: Vec<TimeoutRule> = ["udp:unreplied=7", "udp:53:unreplied=5", "tcp:22:close=1"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let p = Policies::new(&rules);
        assert_eq!(p.of(proto::UDP, 53), 2);
        assert_eq!(p.of(proto::UDP, 54), 1);
        assert_eq!(p.of(proto::TCP, 22), 3);
        assert_eq!(p.of(proto::TCP, 23), 0);
        assert_eq!(p.first_timeout(2), Some(5));
        assert_eq!(p.first_timeout(3), Some(120), "TCP's first: syn_sent");
        assert_eq!(p.first_timeout(0), None);
        // Sysctls other than Linux's defaults: a policy's timeouts stay its own (or the
        // defaults), what is not a timeout of its protocol follows the sysctls in force.
        let live = Sysctl {
            nf_conntrack_udp_timeout_stream: 200,
            nf_conntrack_tcp_timeout_close: 7,
            nf_conntrack_tcp_loose: 0,
            ..Sysctl::default()
        };
        let f = p.in_force(&live);
        assert_eq!(f[1].nf_conntrack_udp_timeout, 5);
        assert_eq!(f[1].nf_conntrack_udp_timeout_stream, 120);
        assert_eq!(f[2].nf_conntrack_tcp_timeout_close, 1);
        assert_eq!(f[2].nf_conntrack_tcp_loose, 0);
        assert_eq!(
            f[2].nf_conntrack_udp_timeout_stream, 200,
            "not the policy's protocol"
        );
    }
}
