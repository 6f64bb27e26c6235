//! One JSON log line, written straight into a byte buffer: the same bytes slog-json
//! writes for a record (its default keys `msg`, `level`, `ts` first, then the logger's
//! values, then the record's, with serde_json's string escaping and number formats),
//! without slog-json's trip through serde: its map serializer per key, a `String` for
//! every formatted value and for the timestamp. The log line was a fifth of ping's
//! instructions; `tests::same_bytes_as_slog_json` holds the two encoders to each other.

use slog::{Key, OwnedKVList, Record, KV};
use std::fmt;

/// Appends `record` as one JSON object and a newline to `out`. On an error (a value
/// whose serialization fails) `out` may hold part of a line.
pub fn encode(out: &mut Vec<u8>, record: &Record<'_>, values: &OwnedKVList) -> slog::Result {
    out.extend_from_slice(b"{\"msg\":");
    Line(out).string_from(record.msg());
    out.extend_from_slice(b",\"level\":\"");
    out.extend_from_slice(record.level().as_short_str().as_bytes());
    out.extend_from_slice(b"\",\"ts\":");
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    if !since_epoch.is_ok_and(|since_epoch| timestamp(out, since_epoch)) {
        formatted(out, time::OffsetDateTime::now_utc());
    }
    let mut line = Line(out);
    values.serialize(record, &mut line)?;
    record.kv().serialize(record, &mut line)?;
    out.extend_from_slice(b"}\n");
    Ok(())
}

thread_local! {
    /// The last second this thread wrote, and its text up to the seconds (`time`'s).
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// The time as `time` writes RFC 3339 in UTC, quoted: the date and the time of day are
/// formatted by `time` once a second per thread and copied until the second changes;
/// the fraction (nanoseconds without trailing zeros, none when zero) is written here.
/// Formatting the whole time on every line was a tenth of the line's instructions.
/// Writes nothing and returns false for a second `time` cannot write in that form.
fn timestamp(out: &mut Vec<u8>, since_epoch: std::time::Duration) -> bool {
    let second = since_epoch.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != second {
        let mut buf = Vec::with_capacity(20);
        let rfc3339 = &time::format_description::well_known::Rfc3339;
        // `YYYY-MM-DDTHH:MM:SSZ`; anything else (a year past 9999) is left to `formatted`.
        let written = i64::try_from(second)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .and_then(|whole| whole.format_into(&mut buf, rfc3339).ok());
        if written != Some(20) {
            return false;
        }
        text.copy_from_slice(&buf[..19]);
        SECOND.set((second, text));
    }
    out.push(b'"');
    out.extend_from_slice(&text);
    let mut nanos = since_epoch.subsec_nanos();
    if nanos != 0 {
        let mut digits = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            digits -= 1;
        }
        let mut buf = itoa::Buffer::new();
        let written = buf.format(nanos);
        out.push(b'.');
        out.extend(std::iter::repeat_n(b'0', digits - written.len()));
        out.extend_from_slice(written.as_bytes());
    }
    out.extend_from_slice(b"Z\"");
    true
}

/// `time`'s RFC 3339 of `now`, quoted, or `null` as slog-json writes when the time cannot be
/// formatted (a year past 9999).
fn formatted(out: &mut Vec<u8>, now: time::OffsetDateTime) {
    let mark = out.len();
    out.push(b'"');
    if now
        .format_into(out, &time::format_description::well_known::Rfc3339)
        .is_ok()
    {
        out.push(b'"');
    } else {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// The object after its first key: every key is written with a leading comma.
struct Line<'a>(&'a mut Vec<u8>);

impl Line<'_> {
    fn key(&mut self, key: &str) {
        // One reservation for the key and its punctuation: each push checks capacity.
        self.0.reserve(key.len() + 4);
        self.0.extend_from_slice(b",\"");
        escape(self.0, key);
        self.0.extend_from_slice(b"\":");
    }

    fn string(&mut self, s: &str) {
        self.0.push(b'"');
        escape(self.0, s);
        self.0.push(b'"');
    }

    /// Formats straight into the line, escaping as it goes.
    fn string_from(&mut self, args: &fmt::Arguments<'_>) {
        match args.as_str() {
            Some(s) => self.string(s),
            None => {
                self.0.push(b'"');
                let _ = fmt::write(&mut Escaping(self.0), *args);
                self.0.push(b'"');
            }
        }
    }

    fn integer(&mut self, key: Key, n: impl itoa::Integer) -> slog::Result {
        self.key(key.as_ref());
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        Ok(())
    }

    /// Values without a hand-written form (floats, nested values): serde_json's own.
    fn serde(&mut self, key: Key, value: &(impl serde::Serialize + ?Sized)) -> slog::Result {
        self.key(key.as_ref());
        serde_json::to_writer(&mut *self.0, value).map_err(std::io::Error::from)?;
        Ok(())
    }
}

struct Escaping<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(self.0, s);
        Ok(())
    }
}

/// serde_json's string escaping: `"`, `\` and control characters; everything else,
/// including non-ASCII text, as is. Almost nothing in a log line needs escaping, so the
/// string is first checked eight bytes at a time and then copied whole; byte by byte,
/// escaping the ~30 short strings of a line was a tenth of ping's instructions.
/// The check and the copy are inlined into each caller; escaping itself is rare and is not.
#[inline(always)]
fn escape(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if needs_escape(bytes) {
        escape_each(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
}

#[cold]
#[inline(never)]
fn escape_each(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = ESCAPE[usize::from(b)];
        if short == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if short == b'u' {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&HEX_PAIRS[usize::from(b)]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any byte of `bytes` needs escaping. Whole words are loaded as they are, and
/// a tail shorter than a word is covered by the string's last eight bytes (overlapping
/// the word before): padding a short chunk into a word was a `memcpy` call per string.
/// A string shorter than a word is read as one word too (two overlapping halves, or its
/// first, middle and last bytes beside harmless ones), and the words' answers are
/// combined without a branch each: most strings of a line are that short.
#[inline(always)]
fn needs_escape(bytes: &[u8]) -> bool {
    let word = |w: &[u8; 8]| escape_bits(u64::from_le_bytes(*w));
    let len = bytes.len();
    let bits = if let Some(last) = bytes.last_chunk::<8>() {
        let (words, _) = bytes.as_chunks::<8>();
        words.iter().fold(word(last), |bits, w| bits | word(w))
    } else if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        let (first, last) = (u32::from_le_bytes(*first), u32::from_le_bytes(*last));
        escape_bits(u64::from(first) | u64::from(last) << 32)
    } else if let (Some(&a), Some(&z)) = (bytes.first(), bytes.last()) {
        word(&[a, bytes[len / 2], z, b'a', b'a', b'a', b'a', b'a'])
    } else {
        0
    };
    bits != 0
}

/// Each byte's two lowercase hex digits (`\u00XX` here, trace ids in `trace`).
pub(crate) const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    pairs
};

/// Per byte: 0 when it is written as is, else the letter after its backslash (`u`:
/// `\u00XX`).
const ESCAPE: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Non-zero when any of the eight bytes of `word` is below 0x20, `"` or `\`. Each test
/// is the classic "some byte is zero" bit trick: a borrow can only mark bytes above one
/// that really matches, so the answer for the word as a whole is exact.
fn escape_bits(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let control = below(word, 0x20);
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    control | quote | backslash
}

impl slog::Serializer for Line<'_> {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments<'_>) -> slog::Result {
        self.key(key.as_ref());
        self.string_from(val);
        Ok(())
    }
    fn emit_str(&mut self, key: Key, val: &str) -> slog::Result {
        self.key(key.as_ref());
        self.string(val);
        Ok(())
    }
    fn emit_char(&mut self, key: Key, val: char) -> slog::Result {
        self.emit_str(key, val.encode_utf8(&mut [0; 4]))
    }
    fn emit_bool(&mut self, key: Key, val: bool) -> slog::Result {
        self.key(key.as_ref());
        self.0
            .extend_from_slice(if val { b"true" } else { b"false" });
        Ok(())
    }
    fn emit_unit(&mut self, key: Key) -> slog::Result {
        self.emit_none(key)
    }
    fn emit_none(&mut self, key: Key) -> slog::Result {
        self.key(key.as_ref());
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn emit_u8(&mut self, key: Key, val: u8) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_i8(&mut self, key: Key, val: i8) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_u16(&mut self, key: Key, val: u16) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_i16(&mut self, key: Key, val: i16) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_u32(&mut self, key: Key, val: u32) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_i32(&mut self, key: Key, val: i32) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_u64(&mut self, key: Key, val: u64) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_i64(&mut self, key: Key, val: i64) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_usize(&mut self, key: Key, val: usize) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_isize(&mut self, key: Key, val: isize) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_u128(&mut self, key: Key, val: u128) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_i128(&mut self, key: Key, val: i128) -> slog::Result {
        self.integer(key, val)
    }
    fn emit_f32(&mut self, key: Key, val: f32) -> slog::Result {
        self.serde(key, &val)
    }
    fn emit_f64(&mut self, key: Key, val: f64) -> slog::Result {
        self.serde(key, &val)
    }
    fn emit_serde(&mut self, key: Key, value: &dyn slog::SerdeValue) -> slog::Result {
        self.serde(key, value.as_serde())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slog::{o, Drain, Logger};
    use std::sync::{Arc, Mutex};

    /// Collects what a drain wrote.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Ours(Sink);

    impl Drain for Ours {
        type Ok = ();
        type Err = slog::Error;
        fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> slog::Result {
            let mut line = Vec::new();
            encode(&mut line, record, values)?;
            self.0 .0.lock().unwrap().extend_from_slice(&line);
            Ok(())
        }
    }

    /// Each line with its timestamp's value cut out (the two encoders read the clock
    /// at different instants), and the timestamps, which must be RFC 3339.
    fn without_ts(bytes: &[u8]) -> Vec<String> {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .map(|line| {
                let start = line.find(",\"ts\":\"").expect("a ts") + 7;
                let end = start + line[start..].find('"').unwrap();
                time::OffsetDateTime::parse(
                    &line[start..end],
                    &time::format_description::well_known::Rfc3339,
                )
                .expect("an RFC 3339 time");
                format!("{}{}", &line[..start], &line[end..])
            })
            .collect()
    }

    #[derive(serde::Serialize)]
    struct Nested {
        a: Vec<u8>,
        b: &'static str,
    }

    impl slog::SerdeValue for Nested {
        fn as_serde(&self) -> &dyn erased_serde::Serialize {
            self
        }
        fn to_sendable(&self) -> Box<dyn slog::SerdeValue + Send + 'static> {
            Box::new(Nested {
                a: self.a.clone(),
                b: self.b,
            })
        }
    }

    impl slog::Value for Nested {
        fn serialize(
            &self,
            _: &Record<'_>,
            key: Key,
            serializer: &mut dyn slog::Serializer,
        ) -> slog::Result {
            serializer.emit_serde(key, self)
        }
    }

    #[test]
    fn same_bytes_as_slog_json() {
        let (theirs, ours) = (Sink::default(), Sink::default());
        let loggers = [
            Logger::root(
                Mutex::new(slog_json::Json::default(theirs.clone())).fuse(),
                o!("service" => "tasks", "local_addr" => "127.0.0.1:5004"),
            ),
            Logger::root(
                Ours(ours.clone()).fuse(),
                o!("service" => "tasks", "local_addr" => "127.0.0.1:5004"),
            ),
        ];
        let addr: std::net::SocketAddr = "[::1]:8080".parse().unwrap();
        let text = "quote \" backslash \\ newline \n tab \t cr \r bell \u{7} \u{1f} del \u{7f} é ☃ 🍺 </script>";
        for log in &loggers {
            let log = log.new(o!("req_id" => "a-b", "remote_addr" => addr, "n" => 7u16));
            slog::info!(log, "request completed";
                "operation_id" => Some("ping"), "none" => None::<&str>,
                "response_code" => 200u16, "latency_us" => 51u128, "neg" => -3i64,
                "big" => u64::MAX, "small" => i8::MIN, "yes" => true, "no" => false,
                "unit" => (), "c" => '"', "f" => 1.5f64, "g" => 1e21f64, "h" => 0.1f32,
                "nan" => f64::NAN, "inf" => f64::INFINITY, "text" => text,
                "formatted" => %format_args!("{addr} {text}"), "debug" => ?text,
                "dup" => 1, "dup" => 2);
            slog::warn!(log, "message {} with \"{}\"", 42, text);
            slog::error!(log, ""; "" => "");
        }
        let theirs = without_ts(&theirs.0.lock().unwrap());
        let ours = without_ts(&ours.0.lock().unwrap());
        assert_eq!(theirs.len(), 3);
        assert_eq!(ours, theirs);
    }

    /// Nested values (slog's `emit_serde`), which slog-json as built here refuses, are
    /// written as serde_json writes them.
    #[test]
    fn nested_values_are_json() {
        let sink = Sink::default();
        let log = Logger::root(Ours(sink.clone()).fuse(), o!());
        slog::info!(log, "m"; "nested" => Nested { a: vec![1, 2], b: "x\"y" });
        let line = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value["nested"],
            serde_json::json!({"a": [1, 2], "b": "x\"y"})
        );
        assert!(
            line.ends_with(",\"nested\":{\"a\":[1,2],\"b\":\"x\\\"y\"}}\n"),
            "{line}"
        );
    }

    /// Every ASCII character at every place of strings longer than a chunk, between
    /// text that needs no escaping, non-ASCII text and other escapes.
    #[test]
    fn escapes_at_every_position_as_serde_json_does() {
        let fillers = [
            "abcdefghijklmnopqrstuvwxyz",
            "é☃🍺\u{7f}\u{80}ÿ",
            "\"\\\n\u{1}x",
        ];
        // Every length up to past two words, so that every tail (the overlapping last
        // word) and the strings shorter than a word are covered.
        for (c, len) in (0u8..0x80)
            .map(char::from)
            .flat_map(|c| (0..20).map(move |n| (c, n)))
        {
            for filler in fillers {
                let filler: Vec<char> = filler.chars().cycle().take(len).collect();
                for at in 0..=filler.len() {
                    let mut s: String = filler[..at].iter().collect();
                    s.push(c);
                    s.extend(&filler[at..]);
                    let mut out = Vec::new();
                    escape(&mut out, &s);
                    let quoted = format!("\"{}\"", String::from_utf8(out).unwrap());
                    assert_eq!(quoted, serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    /// The cached second and the hand-written fraction give `time`'s text, across
    /// seconds, days and years, for every count of trailing zeros.
    #[test]
    fn timestamps_as_time_writes_them() {
        let rfc3339 = &time::format_description::well_known::Rfc3339;
        let seconds = [
            0,
            59,
            86_399,
            86_400,
            951_782_400,
            1_764_662_142,
            1_764_662_143,
        ];
        let nanos = [
            0,
            1,
            10,
            120,
            400_538_657,
            400_538_650,
            100_000_000,
            999_999_999,
            5_000,
            90_000_000,
        ];
        for second in seconds {
            for nano in nanos {
                let since = std::time::Duration::new(second, nano);
                let mut ours = Vec::new();
                assert!(timestamp(&mut ours, since));
                let theirs = (time::OffsetDateTime::UNIX_EPOCH + since)
                    .format(rfc3339)
                    .unwrap();
                assert_eq!(String::from_utf8(ours).unwrap(), format!("\"{theirs}\""));
            }
        }
    }

    #[test]
    fn escapes_every_control_character_as_serde_json_does() {
        for c in (0u8..0x80).map(char::from) {
            let s = format!("a{c}b");
            let mut out = Vec::new();
            escape(&mut out, &s);
            let quoted = format!("\"{}\"", String::from_utf8(out).unwrap());
            assert_eq!(
                quoted,
                serde_json::to_string(&s).unwrap(),
                "{:#x}",
                c as u32
            );
        }
    }
}
