//! Re-runs the kernel oracle live on every committed capture that does not need real time, and
//! checks that today's kernel still gives the committed golden answers. Needs root, the oracle
//! (`../shared/oracle/ktrace` beside the checkout, or `$CTRACK_ORACLE`) and nftables; anywhere
//! else it says why it skipped and passes. The committed goldens carry the truth for everyone.
//! Zone and mark scenarios (`NAME.zones`, `NAME.marks`) go through `pcaps/gen/ktrace_rules.py`,
//! the same oracle with packets put in zones and connections marked (Debian's
//! `/usr/bin/python3` runs it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn oracle() -> Result<PathBuf, String> {
    let p = match std::env::var_os("CTRACK_ORACLE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/oracle/ktrace"),
    };
    if !p.exists() {
        return Err(format!("no oracle at {}", p.display()));
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    if Command::new("nft").arg("--version").output().is_err() {
        return Err("nft (nftables) not installed".into());
    }
    Ok(p)
}

fn scored(text: &str) -> (Vec<String>, Vec<String>) {
    let mut v = Vec::new();
    let mut t = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# table ") {
            let mut toks: Vec<&str> = rest.split_whitespace().collect();
            if toks.len() > 4 {
                toks.remove(4);
            }
            t.push(toks.join(" "));
        } else if !l.starts_with('#') {
            v.push(l.to_string());
        }
    }
    t.sort();
    (v, t)
}

#[test]
fn kernel_still_agrees_with_committed_goldens() {
    let ktrace = match oracle() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("oracle_live: skipped ({why})");
            return;
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    let mut stack = vec![root];
    let mut checked = 0;
    let mut bad = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "pcap") {
                continue;
            }
            let args = std::fs::read_to_string(p.with_extension("args")).unwrap_or_default();
            if args.contains("--realtime") {
                continue;
            }
            let Ok(golden) = std::fs::read_to_string(p.with_extension("golden")) else {
                continue;
            };
            let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/gen/ktrace_rules.py");
            let mut cmd = if p.with_extension("zones").exists()
                || p.with_extension("marks").exists()
                || args.contains("--timeout-policy")
            {
                let mut c = Command::new(&rules);
                c.env("KTRACE", &ktrace);
                c
            } else {
                Command::new(&ktrace)
            };
            let out = cmd
                .arg(&p)
                .args(args.split_whitespace())
                .output()
                .expect("run ktrace");
            let got = String::from_utf8_lossy(&out.stdout);
            let (gv, gt) = scored(&golden);
            let (kv, kt) = scored(&got);
            let same_verdicts = gv.len() == kv.len()
                && gv
                    .iter()
                    .zip(&kv)
                    .all(|(a, b)| a == b || a.ends_with(" dropped") || b.ends_with(" dropped"));
            if !same_verdicts || gt != kt {
                bad.push(p.display().to_string());
            }
            checked += 1;
        }
    }
    eprintln!("oracle_live: {checked} captures re-run through the kernel");
    assert!(
        bad.is_empty(),
        "the kernel now disagrees with these goldens: {bad:?}"
    );
}
