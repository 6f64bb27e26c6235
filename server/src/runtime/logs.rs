//! Where JSON log lines go: each is encoded by the thread that logs it, into that
//! thread's reused buffer (`runtime::logline`: byte for byte what slog-json writes),
//! appended to one shared batch, and written to stdout by a background thread, a batch
//! per write, at most every `GATHER` under load. A request pays for one encoding and one short
//! lock; no value is copied into an owned form for a channel (as slog-async does, an
//! allocation per key), and no system call is made per line. If the output cannot keep
//! up (a stalled pipe), lines past `MAX_PENDING` bytes are dropped and counted in a line
//! of their own, never blocking request handling.

use slog::{Drain, OwnedKVList, Record};
use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};

/// Bytes of lines waiting for the writer before new lines are dropped.
const MAX_PENDING: usize = 8 << 20;

/// A `Drain` writing JSON lines to stdout through a background thread.
pub struct JsonLines {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    ready: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
    closed: bool,
    /// The writer found nothing to write and waits to be woken.
    parked: bool,
}

/// How long the writer lets lines gather after a write. Under load it then writes once
/// per interval and no request wakes it; it is woken only after it found nothing to do.
/// (Waking it for every line, as a channel does, cost more than encoding the line.)
/// Every wake-up takes a core from a request for a moment: at 2 ms, ping's p99 under
/// load was ~0.3 ms longer than at 20 ms (docs/performance.md, "Seventh round").
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

thread_local! {
    /// The line being encoded, its allocation kept from line to line.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl JsonLines {
    /// Starts the writer thread (named `taproom-log`).
    pub fn stdout() -> std::io::Result<JsonLines> {
        JsonLines::to(Box::new(std::io::stdout()))
    }

    /// Lines written to `out` instead (for tests).
    pub fn to(mut out: Box<dyn Write + Send>) -> std::io::Result<JsonLines> {
        let shared = Arc::new(Shared::default());
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("taproom-log".into())
                .spawn(move || write_batches(&shared, &mut out))?
        };
        Ok(JsonLines {
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    fn append(&self, line: &[u8]) {
        let mut pending = self.shared.pending.lock().expect("log lock");
        if pending.bytes.len() + line.len() > MAX_PENDING {
            pending.dropped += 1;
            return;
        }
        pending.bytes.extend_from_slice(line);
        let wake = std::mem::take(&mut pending.parked);
        drop(pending);
        if wake {
            self.shared.ready.notify_one();
        }
    }
}

fn write_batches(shared: &Shared, out: &mut dyn Write) {
    let mut batch = Vec::new();
    loop {
        let (dropped, closed) = {
            let mut pending = shared.pending.lock().expect("log lock");
            while pending.bytes.is_empty() && pending.dropped == 0 && !pending.closed {
                pending.parked = true;
                pending = shared.ready.wait(pending).expect("log lock");
            }
            pending.parked = false;
            std::mem::swap(&mut pending.bytes, &mut batch);
            (std::mem::take(&mut pending.dropped), pending.closed)
        };
        let _ = out.write_all(&batch);
        if dropped > 0 {
            // The same timestamp form as every other line (runtime::logline).
            let ts = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let line = serde_json::json!({
                "msg": "log lines dropped: the output did not keep up",
                "level": "WARN",
                "ts": ts,
                "dropped": dropped,
            });
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        batch.clear();
        if closed {
            // Anything logged after closing is not waited for.
            return;
        }
        std::thread::sleep(GATHER);
    }
}

impl Drain for JsonLines {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        LINE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => {
                self.encode(&mut line, record, values);
                line.clear();
            }
            // Logging while a line of this thread is being encoded (a value that logs):
            // a buffer of its own.
            Err(_) => self.encode(&mut Vec::new(), record, values),
        });
        Ok(())
    }
}

impl JsonLines {
    fn encode(&self, line: &mut Vec<u8>, record: &Record<'_>, values: &OwnedKVList) {
        if super::logline::encode(line, record, values).is_ok() {
            self.append(line);
        }
    }
}

impl Drop for JsonLines {
    fn drop(&mut self) {
        self.shared.pending.lock().expect("log lock").closed = true;
        self.shared.ready.notify_one();
        if let Some(writer) = self.writer.lock().expect("log lock").take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slog::{info, o, Logger};

    /// Collects what the writer thread writes; `gate` holds it until opened.
    #[derive(Clone, Default)]
    struct Collected {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Write for Collected {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Collected {
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
        fn lines(&self) -> Vec<serde_json::Value> {
            String::from_utf8(self.bytes.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order() {
        let out = Collected::default();
        out.open();
        let log = Logger::root(
            JsonLines::to(Box::new(out.clone())).unwrap().fuse(),
            o!("service" => "test"),
        );
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = log.new(o!("thread" => t));
                s.spawn(move || {
                    for i in 0..500 {
                        info!(log, "request completed"; "n" => i, "text" => "a \"quoted\"\nline");
                    }
                });
            }
        });
        drop(log); // waits for the writer
        let lines = out.lines();
        assert_eq!(lines.len(), 2000);
        for t in 0..4 {
            let ns: Vec<u64> = lines
                .iter()
                .filter(|l| l["thread"] == t)
                .map(|l| l["n"].as_u64().unwrap())
                .collect();
            assert_eq!(ns, (0..500).collect::<Vec<_>>(), "in order per thread");
        }
        assert_eq!(lines[0]["text"], "a \"quoted\"\nline");
        assert_eq!(lines[0]["msg"], "request completed");
        assert_eq!(lines[0]["level"], "INFO");
        let mut keys: Vec<&str> = lines[0]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut defaults = keys[..3].to_vec();
        defaults.sort();
        assert_eq!(
            defaults,
            ["level", "msg", "ts"],
            "slog-json's default keys first"
        );
        keys.sort();
        assert_eq!(
            keys,
            ["level", "msg", "n", "service", "text", "thread", "ts"]
        );
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_instead_of_blocking() {
        let out = Collected::default();
        let log = Logger::root(JsonLines::to(Box::new(out.clone())).unwrap().fuse(), o!());
        let filler = "x".repeat(1000);
        // The writer may hold up to MAX_PENDING bytes in the batch it is stuck on, and
        // as many wait behind it: more than twice that must overflow.
        let sent = 2 * MAX_PENDING / 1000 + 500;
        // The writer is stuck on its first batch; the rest must not block this thread.
        for i in 0..sent {
            info!(log, "line"; "i" => i, "filler" => &filler);
        }
        out.open();
        drop(log);
        let lines = out.lines();
        let dropped: u64 = lines
            .iter()
            .filter_map(|l| l.get("dropped").and_then(|d| d.as_u64()))
            .sum();
        let written = lines.iter().filter(|l| l["msg"] == "line").count() as u64;
        assert!(dropped > 0, "some lines were dropped");
        let notice = lines.iter().find(|l| l.get("dropped").is_some()).unwrap();
        let rfc3339 = &time::format_description::well_known::Rfc3339;
        time::OffsetDateTime::parse(notice["ts"].as_str().unwrap(), rfc3339)
            .expect("the notice has a time, as every line");
        assert_eq!(
            written + dropped,
            sent as u64,
            "and every one is accounted for"
        );
    }
}
