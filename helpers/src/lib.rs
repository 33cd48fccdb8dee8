//! Application-layer helpers: the registry of helper names, their default ports and
//! expectation policies, how a ruleset assigns them to connections by port, and each helper's
//! reading of its connections' payload (sans-IO: the engine applies what they announce).
//!
//! ```
//! use ctrack_helpers::{Assignment, parse_assignments};
//! let a = parse_assignments(["ftp:tcp:2121"]).unwrap();
//! assert_eq!(a[0].helper.name, "ftp");
//! assert_eq!((a[0].proto, a[0].port), (6, 2121));
//! let all = parse_assignments(["all"]).unwrap();
//! assert!(all.iter().any(|a| a.helper.name == "sip" && a.port == 5060));
//! ```

#![warn(missing_docs)]

use std::fmt;

pub mod amanda;
pub mod ftp;
pub mod irc;
pub mod pptp;
pub mod sane;
pub mod sip;
pub mod tftp;

/// Expectation policy of one class of a helper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Class name (as the kernel's `nf_conntrack_expect_policy.name`; empty when unnamed).
    pub name: &'static str,
    /// Most pending expectations of this class per master connection.
    pub max_expected: u32,
    /// Lifetime of an expectation, in seconds.
    pub timeout: u32,
}

/// A helper ctrack knows by name.
#[derive(Debug, PartialEq, Eq)]
pub struct Helper {
    /// Name as `nft ct helper` types and `--helper` take it.
    pub name: &'static str,
    /// Layer-4 protocol it inspects (6 = TCP, 17 = UDP).
    pub proto: u8,
    /// The port `--helper all` assigns it to.
    pub default_port: u16,
    /// Expectation classes.
    pub policies: &'static [Policy],
}

/// A helper's single, unnamed expectation class (only SIP names its classes).
const fn one(max_expected: u32, timeout: u32) -> [Policy; 1] {
    [Policy {
        name: "",
        max_expected,
        timeout,
    }]
}

/// Every helper by name, with the port the kernel oracle's `--helper all` assigns it to.
pub static HELPERS: &[Helper] = &[
    Helper {
        name: "ftp",
        proto: 6,
        default_port: 21,
        policies: &one(1, 300),
    },
    Helper {
        name: "tftp",
        proto: 17,
        default_port: 69,
        policies: &one(1, 300),
    },
    Helper {
        name: "irc",
        proto: 6,
        default_port: 6667,
        policies: &one(8, 300),
    },
    Helper {
        name: "sip",
        proto: 17,
        default_port: 5060,
        policies: &[
            Policy {
                name: "signalling",
                max_expected: 1,
                timeout: 180,
            },
            Policy {
                name: "audio",
                max_expected: 4,
                timeout: 180,
            },
            Policy {
                name: "video",
                max_expected: 4,
                timeout: 180,
            },
            Policy {
                name: "image",
                max_expected: 2,
                timeout: 180,
            },
        ],
    },
    Helper {
        name: "amanda",
        proto: 17,
        default_port: 10080,
        policies: &one(4, 180),
    },
    Helper {
        name: "sane",
        proto: 6,
        default_port: 6566,
        policies: &one(1, 300),
    },
    Helper {
        name: "pptp",
        proto: 6,
        default_port: 1723,
        policies: &one(2, 300),
    },
    Helper {
        name: "snmp",
        proto: 17,
        default_port: 161,
        policies: &one(1, 30),
    },
    Helper {
        name: "netbios-ns",
        proto: 17,
        default_port: 137,
        policies: &one(1, 3),
    },
];

/// Looks a helper up by name.
pub fn by_name(name: &str) -> Option<&'static Helper> {
    HELPERS.iter().find(|h| h.name == name)
}

/// A ruleset line: connections to `port` over `proto` get `helper`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The helper.
    pub helper: &'static Helper,
    /// Layer-4 protocol number.
    pub proto: u8,
    /// Destination port of the connection's first packet.
    pub port: u16,
}

/// Why a `--helper` argument was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssignError {
    /// No helper has that name.
    UnknownHelper(String),
    /// Not `all` and not `NAME:PROTO:PORT`.
    Syntax(String),
    /// The protocol is not `tcp` or `udp`.
    BadProto(String),
    /// The port is not a number from 1 to 65535.
    BadPort(String),
}

impl fmt::Display for AssignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssignError::UnknownHelper(n) => {
                write!(f, "unknown helper '{n}'; known helpers: ")?;
                for (i, h) in HELPERS.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(h.name)?;
                }
                Ok(())
            }
            AssignError::Syntax(s) => {
                write!(f, "bad helper '{s}': expected all or NAME:PROTO:PORT")
            }
            AssignError::BadProto(s) => write!(f, "bad helper protocol '{s}': expected tcp or udp"),
            AssignError::BadPort(s) => write!(f, "bad helper port '{s}': expected 1 to 65535"),
        }
    }
}

impl std::error::Error for AssignError {}

/// Parses one `--helper` value: `all`, or `NAME:PROTO:PORT` (e.g. `ftp:tcp:21`).
pub fn parse_assignment(s: &str) -> Result<Vec<Assignment>, AssignError> {
    if s == "all" {
        return Ok(HELPERS
            .iter()
            .map(|h| Assignment {
                helper: h,
                proto: h.proto,
                port: h.default_port,
            })
            .collect());
    }
    let mut it = s.split(':');
    let (Some(name), Some(proto), Some(port), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(AssignError::Syntax(s.to_string()));
    };
    let helper = by_name(name).ok_or_else(|| AssignError::UnknownHelper(name.to_string()))?;
    let proto = match proto {
        "tcp" => 6,
        "udp" => 17,
        _ => return Err(AssignError::BadProto(proto.to_string())),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| AssignError::BadPort(port.to_string()))?;
    Ok(vec![Assignment {
        helper,
        proto,
        port,
    }])
}

/// Parses several `--helper` values into one rule list.
pub fn parse_assignments<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Assignment>, AssignError> {
    let mut out = Vec::new();
    for s in items {
        out.extend(parse_assignment(s)?);
    }
    Ok(out)
}

/// The helper a ruleset assigns to a new connection with this protocol and destination port:
/// the first matching rule, as nftables applies the first `ct helper set` that matches.
pub fn assigned(rules: &[Assignment], proto: u8, dport: u16) -> Option<&'static Helper> {
    rules
        .iter()
        .find(|a| a.proto == proto && a.port == dport)
        .map(|a| a.helper)
}

/// The registry position of a helper, 1-based (0 means no helper), for compact storage.
pub fn index_of(h: &Helper) -> u8 {
    HELPERS
        .iter()
        .position(|x| std::ptr::eq(x, h))
        .map_or(0, |i| i as u8 + 1)
}

/// The helper at a 1-based registry position.
pub fn at_index(i: u8) -> Option<&'static Helper> {
    HELPERS.get((i as usize).checked_sub(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line_and_specific() {
        let e = parse_assignment("bogus:tcp:21").unwrap_err();
        assert!(e.to_string().contains("bogus") && e.to_string().contains("ftp"));
        assert!(matches!(
            parse_assignment("ftp:tcp"),
            Err(AssignError::Syntax(_))
        ));
        assert!(matches!(
            parse_assignment("ftp:sctp:21"),
            Err(AssignError::BadProto(_))
        ));
        assert!(matches!(
            parse_assignment("ftp:tcp:0"),
            Err(AssignError::BadPort(_))
        ));
        assert!(matches!(
            parse_assignment("ftp:tcp:70000"),
            Err(AssignError::BadPort(_))
        ));
        for e in [
            parse_assignment("x").unwrap_err(),
            parse_assignment("nope:udp:1").unwrap_err(),
        ] {
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn assignment_lookup() {
        let rules = parse_assignments(["all"]).unwrap();
        assert_eq!(assigned(&rules, 6, 21).map(|h| h.name), Some("ftp"));
        assert_eq!(assigned(&rules, 17, 21), None);
        let h = by_name("pptp").unwrap();
        assert_eq!(at_index(index_of(h)).map(|h| h.name), Some("pptp"));
        assert_eq!(at_index(0), None);
    }
}
