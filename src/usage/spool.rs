//! The local usage spool: when the store cannot take records, they are
//! appended here (JSON lines, fsynced) and replayed in order once it can, also
//! across restarts. Records hold metadata only (see [`UsageRecord`]), never a
//! body, so writing them to disk keeps invariant 2.
//!
//! Replay progress is kept in a small offset file beside the spool, written
//! after each stored batch; a crash between a batch's commit and that write
//! replays the one batch again (at most [`super::BATCH`] duplicates).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::UsageRecord;

/// Beyond this size new records are refused (counted and logged), so a store
/// outage cannot fill the disk.
pub const MAX_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    /// Records waiting in the file.
    pending: u64,
}

impl Spool {
    /// Opens (or prepares) the spool at `path`, counting records left by a
    /// previous run.
    pub fn open(path: &Path) -> io::Result<Spool> {
        let mut offset_path = path.as_os_str().to_owned();
        offset_path.push(".offset");
        let mut spool = Spool {
            path: path.to_path_buf(),
            offset_path: offset_path.into(),
            pending: 0,
        };
        if path.exists() {
            let offset = spool.offset()?;
            let mut f = File::open(path)?;
            f.seek(SeekFrom::Start(offset))?;
            spool.pending = BufReader::new(f).lines().count() as u64;
        }
        Ok(spool)
    }

    /// Records in the file not yet stored.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends records in order and syncs them to disk. Returns how many were
    /// refused because the spool is full.
    pub fn append(&mut self, records: &[UsageRecord]) -> io::Result<usize> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut size = f.metadata()?.len();
        let mut buf = Vec::new();
        let mut refused = 0;
        for r in records {
            let line = serde_json::to_vec(r).map_err(io::Error::other)?;
            if size + buf.len() as u64 + line.len() as u64 + 1 > MAX_BYTES {
                refused += 1;
                continue;
            }
            buf.extend_from_slice(&line);
            buf.push(b'\n');
            self.pending += 1;
        }
        f.write_all(&buf)?;
        f.sync_data()?;
        size += buf.len() as u64;
        let _ = size;
        Ok(refused)
    }

    /// Up to `max` records from the replay position, with the position after them.
    pub fn read_batch(&self, max: usize) -> io::Result<(Vec<UsageRecord>, u64)> {
        let offset = self.offset()?;
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::new(f);
        let mut out = Vec::new();
        let mut pos = offset;
        let mut line = Vec::new();
        while out.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // end, or a line cut short by a crash mid-write
            }
            pos += n as u64;
            match serde_json::from_slice::<UsageRecord>(&line) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable line in the usage spool; skipped")
                }
            }
        }
        Ok((out, pos))
    }

    /// Marks everything before `offset` as stored (`stored` records); empties
    /// the files once all is replayed.
    pub fn commit(&mut self, offset: u64, stored: u64) -> io::Result<()> {
        self.pending = self.pending.saturating_sub(stored);
        let len = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if offset >= len {
            fs::remove_file(&self.path)?;
            let _ = fs::remove_file(&self.offset_path);
            self.pending = 0;
            return Ok(());
        }
        let tmp = self.offset_path.with_extension("offset.tmp");
        fs::write(&tmp, offset.to_string())?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &self.offset_path)
    }

    fn offset(&self) -> io::Result<u64> {
        match fs::read_to_string(&self.offset_path) {
            Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64) -> UsageRecord {
        UsageRecord {
            request_id: format!("req-{n}").into(),
            time_ms: n,
            tenant: "acme".into(),
            project: None,
            key_id: "abcdefgh".into(),
            endpoint: "chat.completions",
            model: "gpt-4o".into(),
            provider: Some("eu".into()),
            upstream_model: Some("gpt-4o-2024".into()),
            policy_version: Some("0123456789ab".into()),
            prompt_tokens: Some(3),
            completion_tokens: Some(4),
            status: 200,
            outcome: "ok",
            attempts: 1,
            providers_tried: "eu".into(),
            latency_ms: 1.5,
            ttft_ms: None,
            overhead_ms: 0.2,
            streamed: false,
            client_api: "openai",
            provider_api: Some("openai"),
        }
    }

    #[test]
    fn records_come_back_in_order_across_reopen_and_partial_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.spool");
        let mut s = Spool::open(&path).unwrap();
        s.append(&(0..5).map(record).collect::<Vec<_>>()).unwrap();
        s.append(&[record(5)]).unwrap();
        assert_eq!(s.pending(), 6);

        let (batch, pos) = s.read_batch(4).unwrap();
        assert_eq!(batch, (0..4).map(record).collect::<Vec<_>>());
        s.commit(pos, 4).unwrap();

        // A restart: the remaining two, in order.
        let mut s = Spool::open(&path).unwrap();
        assert_eq!(s.pending(), 2);
        let (batch, pos) = s.read_batch(10).unwrap();
        assert_eq!(batch, vec![record(4), record(5)]);
        s.commit(pos, 2).unwrap();
        assert_eq!(s.pending(), 0);
        assert!(!path.exists(), "a drained spool leaves no file");
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.spool");
        let mut s = Spool::open(&path).unwrap();
        s.append(&[record(1)]).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"request_id\":\"req-2\"").unwrap();
        let (batch, _) = s.read_batch(10).unwrap();
        assert_eq!(batch, vec![record(1)]);
    }
}
