//! Any bytes as a capture file: a clean error or a capture whose every record replays
//! through the engine, never a panic.

#![no_main]

use ctrack::{Config, Conntrack, capture};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cap) = capture::parse(data.to_vec()) else {
        return;
    };
    let ct = Conntrack::new(Config::default());
    let mut last = 0;
    for (ts, link, frame) in cap.packets() {
        last = last.max(ts);
        let v = ct.process(frame, link, ts);
        let mut line = String::new();
        let _ = v.write_line(&mut line);
    }
    ct.for_each_entry(last, |e| {
        let _ = e.proc_line();
    });
});
