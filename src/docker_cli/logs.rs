//! A container's output as the engine gives it (`GET /containers/{id}/logs`): the query built
//! from our options, and the decoding of the engine's multiplexed stream. Without a TTY the
//! engine frames stdout and stderr: an 8-byte header (stream byte 1 or 2, three zero bytes, a
//! big-endian u32 length) before each payload; with a TTY the stream is the raw bytes.
//!
//! Owns the framing of logs only: which container, and whether it has a TTY, is for the caller.

use std::io::{self, BufReader, Read};

/// Which of a container's streams to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    Stdout,
    Stderr,
    Both,
}

impl Streams {
    pub fn parse(s: &str) -> Option<Streams> {
        match s {
            "stdout" => Some(Streams::Stdout),
            "stderr" => Some(Streams::Stderr),
            "both" => Some(Streams::Both),
            _ => None,
        }
    }
}

/// What to read of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// The last N lines only.
    pub tail: Option<u64>,
    /// Lines from this time on, in seconds since the epoch.
    pub since: Option<i64>,
    /// Each line prefixed by its RFC 3339 time (the engine's).
    pub timestamps: bool,
    pub streams: Streams,
    /// Keep the stream open for new output until the container stops.
    pub follow: bool,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions { tail: None, since: None, timestamps: false, streams: Streams::Both, follow: false }
    }
}

impl LogOptions {
    /// The query string of the engine's logs call.
    pub fn query(&self) -> String {
        let (stdout, stderr) = match self.streams {
            Streams::Stdout => (1, 0),
            Streams::Stderr => (0, 1),
            Streams::Both => (1, 1),
        };
        let mut q = format!(
            "stdout={stdout}&stderr={stderr}&follow={}&timestamps={}",
            u8::from(self.follow),
            u8::from(self.timestamps)
        );
        match self.tail {
            Some(n) => q.push_str(&format!("&tail={n}")),
            None => q.push_str("&tail=all"),
        }
        if let Some(t) = self.since {
            q.push_str(&format!("&since={t}"));
        }
        q
    }
}

/// The largest frame we accept: the engine cuts lines into frames of at most a few KiB, so a
/// header claiming more is not a log frame.
const MAX_FRAME: usize = 1024 * 1024;

/// The payloads of a multiplexed log stream, headers taken off (stdout and stderr interleaved as
/// they came). A header with an unknown stream byte or an absurd length is an error, not data.
/// One read hands out as many frames as have already arrived (the engine frames each line, so a
/// frame per read would make a chatty log a stream of tiny pieces), waiting only for the first.
pub struct Demux<R> {
    inner: BufReader<R>,
    /// Bytes of the current frame's payload still to hand out.
    left: usize,
}

impl<R: Read> Demux<R> {
    pub fn new(inner: R) -> Demux<R> {
        Demux { inner: BufReader::with_capacity(64 * 1024, inner), left: 0 }
    }

    /// Reads the next header, or `None` at the end of the stream.
    fn header(&mut self) -> io::Result<Option<usize>> {
        let mut header = [0u8; 8];
        let mut got = 0;
        while got < header.len() {
            match self.inner.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "log frame header cut short")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if header[0] > 2 || header[1..4] != [0, 0, 0] {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a log frame header"));
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "log frame over 1 MiB"));
        }
        Ok(Some(len))
    }
}

impl<R: Read> Read for Demux<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < buf.len() {
            if self.left == 0 {
                // past the first piece, go on only with what has already arrived
                if written > 0 && self.inner.buffer().len() < 8 {
                    break;
                }
                match self.header()? {
                    Some(len) => self.left = len,
                    None if written == 0 => return Ok(0),
                    None => break,
                }
                continue;
            }
            if written > 0 && self.inner.buffer().is_empty() {
                break;
            }
            let want = (buf.len() - written).min(self.left);
            let n = self.inner.read(&mut buf[written..written + want])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "log frame cut short"));
            }
            self.left -= n;
            written += n;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn demux(bytes: &[u8]) -> io::Result<String> {
        let mut out = String::new();
        Demux::new(bytes).read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn frames_are_decoded_in_order_across_streams() {
        let mut wire = frame(1, b"out one\n");
        wire.extend(frame(2, b"err one\n"));
        wire.extend(frame(1, b""));
        wire.extend(frame(1, b"out two\n"));
        assert_eq!(demux(&wire).unwrap(), "out one\nerr one\nout two\n");
        assert_eq!(demux(b"").unwrap(), "");
    }

    #[test]
    fn a_frame_read_a_byte_at_a_time_is_whole() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let wire = frame(2, b"slowly\n");
        let mut out = String::new();
        Demux::new(Trickle(&wire)).read_to_string(&mut out).unwrap();
        assert_eq!(out, "slowly\n");
    }

    #[test]
    fn frames_already_arrived_come_out_in_one_read() {
        let wire: Vec<u8> = (0..100).flat_map(|i| frame(1 + i % 2, format!("line {i}\n").as_bytes())).collect();
        let mut demux = Demux::new(&wire[..]);
        let mut buf = vec![0u8; 64 * 1024];
        let n = demux.read(&mut buf).unwrap();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8_lossy(&buf[..n]), expected);
        assert_eq!(demux.read(&mut buf).unwrap(), 0);
        let mut small = [0u8; 5];
        let mut again = Demux::new(&wire[..]);
        assert_eq!(again.read(&mut small).unwrap(), 5, "a small buffer is filled, the frame's rest kept");
        assert_eq!(&small, b"line ");
    }

    #[test]
    fn broken_streams_are_errors() {
        let cases: [(&str, Vec<u8>); 4] = [
            ("header cut", vec![1, 0, 0]),
            ("payload cut", frame(1, b"hello")[..10].to_vec()),
            ("raw text, not frames", b"hello world\n".to_vec()),
            ("absurd length", vec![1, 0, 0, 0, 0x7f, 0, 0, 0]),
        ];
        for (what, wire) in cases {
            assert!(demux(&wire).is_err(), "{what}");
        }
    }

    #[test]
    fn queries_say_what_to_read() {
        let all = LogOptions::default();
        assert_eq!(all.query(), "stdout=1&stderr=1&follow=0&timestamps=0&tail=all");
        let some = LogOptions {
            tail: Some(5),
            since: Some(1_700_000_000),
            timestamps: true,
            streams: Streams::Stderr,
            follow: true,
        };
        assert_eq!(some.query(), "stdout=0&stderr=1&follow=1&timestamps=1&tail=5&since=1700000000");
        assert_eq!(Streams::parse("stdout"), Some(Streams::Stdout));
        assert_eq!(Streams::parse("all"), None);
    }
}
