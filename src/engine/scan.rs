//! Reads one backing file block by block, in either content layout (v1 or paged), and says
//! which plaintext ranges authenticate and which do not, and why not; the readable plaintext
//! goes to a sink (fsck --salvage copies it out). It must not write to the backing file, and it
//! never hands unauthenticated bytes to the sink.

use crate::crypto::{DirKey, VolumeKeys, BLOCK_SIZE, CIPHER_BLOCK_SIZE};
use crate::format::{
    page_sealed, paged_block_len, paged_block_offset, paged_page_count, paged_plain_of, FileHeader,
    HEADER_LEN, PAGE, PAGED_BLOCK,
};
use crate::fs::file_io::visible_size;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Blocks read per pread.
const BATCH: u64 = 64;

/// Why a range does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadKind {
    /// A block whose stored form is only zeros: space the file was given whose data never
    /// reached the disk.
    Unwritten,
    /// A paged block shorter than a full one that is not the last: an append that a power cut
    /// interrupted (its own bytes read; the rest of the block does not exist).
    TornAppend,
    /// A v1 last block too short to hold any data (1..=28 stored bytes).
    Stub,
    /// The block does not authenticate: torn by a cut (v1 only: a block spans two pages), or
    /// modified.
    BadTag,
}

/// A plaintext byte range `[start, end)` that does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRange {
    pub start: u64,
    pub end: u64,
    pub block: u64,
    pub kind: BadKind,
    /// The block is the file's last one.
    pub last: bool,
}

/// What a scan found in a file whose header opened.
#[derive(Debug, Default)]
pub struct Scan {
    pub size: u64,
    pub blocks: u64,
    pub paged: bool,
    pub bad: Vec<BadRange>,
}

/// Why a file's header does not open.
#[derive(Debug)]
pub struct HeaderProblem {
    pub what: String,
    /// The header bytes on disk are missing or all zero (its write never reached the disk).
    pub empty: bool,
}

/// Scans `f` (`csize` backing bytes) of directory `dir`. `sink(offset, bytes)` gets every
/// authenticated plaintext range, in order.
pub fn scan_file(
    f: &File,
    csize: u64,
    keys: &VolumeKeys,
    dir: &DirKey,
    mut sink: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<Result<Scan, HeaderProblem>> {
    if csize == 0 {
        return Ok(Ok(Scan::default()));
    }
    let mut header = vec![0u8; HEADER_LEN.min(csize as usize)];
    f.read_exact_at(&mut header, 0)?;
    if csize < HEADER_LEN as u64 {
        let empty = header.iter().all(|&b| b == 0);
        let what = format!("header cut short ({csize} bytes)");
        return Ok(Err(HeaderProblem { what, empty }));
    }
    let fk = match keys.open_file(dir, &header) {
        Ok(k) => k,
        Err(e) => {
            let empty = header.iter().all(|&b| b == 0);
            return Ok(Err(HeaderProblem {
                what: format!("header: {e}"),
                empty,
            }));
        }
    };
    let paged = FileHeader::parse(&header).is_ok_and(|h| h.is_paged());
    let mut scan = Scan {
        paged,
        ..Scan::default()
    };
    let mut out = vec![0u8; BLOCK_SIZE];
    if paged {
        let pages = paged_page_count(csize);
        scan.size = paged_plain_of(csize);
        let pb = PAGED_BLOCK;
        let mut buf = vec![0u8; (BATCH * PAGE) as usize];
        let mut idx = 0;
        while idx < pages {
            let n = (pages - idx).min(BATCH);
            let len = (n * PAGE) as usize;
            f.read_exact_at(&mut buf[..len], paged_block_offset(idx))?;
            for (j, page) in buf[..len].chunks(PAGE as usize).enumerate() {
                let i = idx + j as u64;
                let last = i + 1 == pages;
                let end = ((i + 1) * pb).min(scan.size);
                let opened = page_sealed(page)
                    .ok()
                    .and_then(|s| fk.open_block(i, s, &mut out).ok());
                scan.blocks += 1;
                match opened {
                    Some(got) => {
                        let want = paged_block_len(scan.size, i);
                        sink(i * pb, &out[..got.min(want)])?;
                        if got < want {
                            let cut = i * pb + got as u64;
                            scan.bad.push(range(cut, end, i, BadKind::TornAppend, last));
                        }
                    }
                    None => {
                        let kind = if page.iter().all(|&b| b == 0) {
                            BadKind::Unwritten
                        } else {
                            BadKind::BadTag
                        };
                        scan.bad.push(range(i * pb, end, i, kind, last));
                    }
                }
            }
            idx += n;
        }
        return Ok(Ok(scan));
    }
    scan.size = visible_size(csize);
    let (bs, cbs) = (BLOCK_SIZE as u64, CIPHER_BLOCK_SIZE as u64);
    let nblocks = scan.size.div_ceil(bs);
    let mut buf = vec![0u8; (BATCH * cbs) as usize];
    let mut idx = 0;
    while idx < nblocks {
        let n = (nblocks - idx).min(BATCH);
        let start = HEADER_LEN as u64 + idx * cbs;
        let len = (csize - start).min(n * cbs) as usize;
        f.read_exact_at(&mut buf[..len], start)?;
        for (j, stored) in buf[..len].chunks(cbs as usize).enumerate() {
            let i = idx + j as u64;
            let last = i + 1 == nblocks;
            let end = ((i + 1) * bs).min(scan.size);
            scan.blocks += 1;
            if stored.len() <= crate::crypto::BLOCK_OVERHEAD {
                scan.bad.push(range(i * bs, end, i, BadKind::Stub, last));
                continue;
            }
            match fk.open_block(i, stored, &mut out) {
                Ok(got) => sink(i * bs, &out[..got])?,
                Err(_) => {
                    let kind = if stored.iter().all(|&b| b == 0) {
                        BadKind::Unwritten
                    } else {
                        BadKind::BadTag
                    };
                    scan.bad.push(range(i * bs, end, i, kind, last));
                }
            }
        }
        idx += n;
    }
    Ok(Ok(scan))
}

fn range(start: u64, end: u64, block: u64, kind: BadKind, last: bool) -> BadRange {
    BadRange {
        start,
        end: end.max(start),
        block,
        kind,
        last,
    }
}

impl BadRange {
    pub fn describe(&self) -> String {
        let what = match self.kind {
            BadKind::Unwritten => "never written (zeros)",
            BadKind::TornAppend => "torn append (the rest of the block was never written)",
            BadKind::Stub => "cut short (impossible ciphertext size)",
            BadKind::BadTag => "failed authentication",
        };
        format!(
            "block {} {what}: bytes {}..{}",
            self.block, self.start, self.end
        )
    }
}
