//! The container log, in Docker's json-file format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-28T15:00:00.123456789Z"}`. Output is cut
//! into lines as it arrives (a line longer than 16 KiB is cut in pieces, as Docker does); a
//! last line without a newline is written when the output ends.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::runtime::{OutputSink, Stream};
use crate::units::rfc3339_nanos_now;

const MAX_LINE: usize = 16 * 1024;

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The text, with its newline when it had one.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 time with nanoseconds.
    pub time: String,
}

/// Appends the container's output to its log.
pub struct LogWriter {
    file: File,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (creating) the log at `path` for appending.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(LogWriter {
            file: OpenOptions::new().create(true).append(true).open(path)?,
            partial: [Vec::new(), Vec::new()],
        })
    }

    fn write_entry(&mut self, stream: Stream, text: &[u8]) {
        let entry = LogEntry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: match stream {
                Stream::Stdout => "stdout".into(),
                Stream::Stderr => "stderr".into(),
            },
            time: rfc3339_nanos_now(),
        };
        if let Ok(mut line) = serde_json::to_vec(&entry) {
            line.push(b'\n');
            let _ = self.file.write_all(&line);
        }
    }
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl OutputSink for LogWriter {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.partial[slot(stream)]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl + 1;
            let line = buf[start..end].to_vec();
            for chunk in line.chunks(MAX_LINE) {
                self.write_entry(stream, chunk);
            }
            start = end;
        }
        let mut rest = buf.split_off(start);
        while rest.len() >= MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            self.write_entry(stream, &rest);
            rest = tail;
        }
        self.partial[slot(stream)] = rest;
    }

    fn finish(&mut self) {
        for s in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[slot(s)]);
            if !rest.is_empty() {
                self.write_entry(s, &rest);
            }
        }
        let _ = self.file.flush();
    }
}

/// Reads a log from a position on.
pub struct LogReader {
    reader: BufReader<File>,
    pending: String,
}

impl LogReader {
    /// Opens the log at `path` (an absent log reads as empty).
    pub fn open(path: &Path) -> io::Result<Option<Self>> {
        match File::open(path) {
            Ok(f) => Ok(Some(LogReader {
                reader: BufReader::new(f),
                pending: String::new(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next complete entry, if one has been written; malformed lines are skipped.
    pub fn next_entry(&mut self) -> io::Result<Option<LogEntry>> {
        loop {
            let n = self.reader.read_line(&mut self.pending)?;
            if n == 0 || !self.pending.ends_with('\n') {
                return Ok(None);
            }
            let line = std::mem::take(&mut self.pending);
            if let Ok(e) = serde_json::from_str::<LogEntry>(&line) {
                return Ok(Some(e));
            }
        }
    }

    /// Every entry written so far.
    pub fn read_all(&mut self) -> io::Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        while let Some(e) = self.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_into_lines_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = LogWriter::open(&p).unwrap();
        w.output(Stream::Stdout, b"a\nb");
        w.output(Stream::Stderr, b"e\n");
        w.output(Stream::Stdout, b"c\nd");
        w.finish();
        let got: Vec<(String, String)> = LogReader::open(&p)
            .unwrap()
            .unwrap()
            .read_all()
            .unwrap()
            .into_iter()
            .map(|e| (e.stream, e.log))
            .collect();
        let want = [
            ("stdout", "a\n"),
            ("stderr", "e\n"),
            ("stdout", "bc\n"),
            ("stdout", "d"),
        ];
        assert_eq!(got, want.map(|(s, l)| (s.to_string(), l.to_string())));
    }
}
