//! Gzip inputs held whole, inflated in one call.
//!
//! CloudTrail's log files are small gzip files, and inflating them is about 40 % of a replay of
//! a trail's archive. libdeflate inflates a whole buffer about a quarter faster than a
//! streaming inflater (39,902 log files: 249 ms against 325 ms), and needs no per-file stream
//! state. It only ever succeeds or declines: a file it declines (bad data, a member it does not
//! accept, more text than [`MOST_TEXT`]) is read by the streaming inflater from its start, so
//! what a replay makes of any file, good or broken, is decided in one place. It is asked first
//! by every replay of local files, one thread or many, so they agree; it accepts a little more
//! than zlib does (see the property test below), never a different text.

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE,
    libdeflate_result_LIBDEFLATE_SUCCESS,
};
use std::cell::RefCell;
use std::ptr::NonNull;

/// The most text inflated in one call; more (a compression bomb, or a file far larger than a
/// log file) goes the streaming way, which reads a line at a time.
const MOST_TEXT: usize = 64 << 20;

/// The gzip header flag saying a CRC-16 of the header follows it.
const FHCRC: u8 = 0x02;

/// One thread's decompressor (a few KiB of tables, allocated once).
struct Decompressor(NonNull<libdeflate_decompressor>);

impl Decompressor {
    fn new() -> Option<Self> {
        // SAFETY: allocates a decompressor or returns null (out of memory).
        NonNull::new(unsafe { libdeflate_alloc_decompressor() }).map(Decompressor)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor and freed once, here.
        unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// The text of `gz`, one or more gzip members one after another, or `None` when libdeflate
/// declines it (the caller then reads it the streaming way).
pub fn inflate_whole(gz: &[u8]) -> Option<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.try_borrow_mut().ok()?;
        if cell.is_none() {
            *cell = Decompressor::new();
        }
        let d = cell.as_ref()?;
        members(d, gz)
    })
}

/// Every member of `gz`, inflated into one buffer first sized by the last member's ISIZE.
fn members(d: &Decompressor, gz: &[u8]) -> Option<Vec<u8>> {
    let last_size = last_member_size(gz).unwrap_or(0);
    if gz.len() > MOST_TEXT {
        return None;
    }
    // A forged ISIZE may claim 4 GiB of a 20-byte file: deflate inflates at most 1032-fold.
    let hint = last_size.min(gz.len().saturating_mul(1032));
    let mut out: Vec<u8> = Vec::with_capacity(hint.max(gz.len()).min(MOST_TEXT));
    let mut at = 0;
    while at < gz.len() {
        let member = &gz[at..];
        // libdeflate skips a header's own checksum (FHCRC) without checking it; the streaming
        // inflater checks it, so such a member is left to it.
        if member.get(3).is_some_and(|flags| flags & FHCRC != 0) {
            return None;
        }
        let (used, made) = loop {
            let spare = out.spare_capacity_mut();
            let (mut used, mut made) = (0usize, 0usize);
            // SAFETY: the input is `member`; the output is `out`'s spare capacity, which
            // libdeflate writes at most `spare.len()` bytes of, and reports how many it wrote
            // (`made`) and read (`used`) only when it succeeds.
            let result = unsafe {
                libdeflate_gzip_decompress_ex(
                    d.0.as_ptr(),
                    member.as_ptr().cast(),
                    member.len(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    &mut used,
                    &mut made,
                )
            };
            if result == libdeflate_result_LIBDEFLATE_SUCCESS {
                break (used, made);
            }
            if result != libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE
                || out.capacity() >= MOST_TEXT
            {
                return None;
            }
            let grown = (out.capacity() * 2).clamp(64 << 10, MOST_TEXT);
            out.reserve_exact(grown - out.len());
        };
        if used == 0 || used > member.len() || made > out.capacity() - out.len() {
            return None;
        }
        // SAFETY: libdeflate wrote `made` bytes of the spare capacity, checked just above.
        unsafe { out.set_len(out.len() + made) };
        at += used;
    }
    Some(out)
}

/// The ISIZE in the trailer of `gz`'s last member (its text's size, modulo 2^32): a hint only,
/// which nothing checks until that member is inflated.
pub fn last_member_size(gz: &[u8]) -> Option<usize> {
    let trailer = gz.get(gz.len().checked_sub(4)?..)?;
    Some(u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::{Read, Write};

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text).unwrap();
        enc.finish().unwrap()
    }

    /// What the streaming inflater reads of `gz`, or `None` when it fails.
    fn streamed(gz: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        flate2::bufread::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .ok()
            .map(|_| out)
    }

    #[test]
    fn members_one_after_another_read_as_one_text() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| i.to_string().into_bytes())
            .collect();
        let mut gz = gzip(&text[..30_000]);
        gz.extend(gzip(&text[30_000..]));
        gz.extend(gzip(b""));
        assert_eq!(inflate_whole(&gz).as_deref(), Some(&text[..]));
        // A last member that says it is tiny: the buffer grows.
        gz.extend(gzip(b"x"));
        let mut want = text.clone();
        want.push(b'x');
        assert_eq!(inflate_whole(&gz), Some(want));
    }

    #[test]
    fn what_it_declines_or_accepts_the_streaming_way_reads_the_same() {
        let text = b"{\"eventName\":\"a\"}\n".repeat(500);
        let gz = gzip(&text);
        let mut cases = vec![gz.clone(), gz[..gz.len() - 1].to_vec(), gz[..10].to_vec()];
        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"garbage");
        cases.push(trailing);
        let mut two = gz.clone();
        two.extend(&gz);
        cases.push(two);
        for (i, case) in cases.iter().enumerate() {
            assert_eq!(inflate_whole(case), streamed(case), "case {i}");
        }
        assert!(inflate_whole(&gz[..gz.len() - 1]).is_none());
        assert!(inflate_whole(b"\x1f\x8b").is_none());
    }

    #[test]
    fn a_member_with_a_header_checksum_is_left_to_the_streaming_way() {
        let mut enc = flate2::GzBuilder::new()
            .filename("x")
            .write(Vec::new(), flate2::Compression::default());
        enc.write_all(b"hello\n").unwrap();
        let plain = enc.finish().unwrap();
        // The same member, saying a (wrong) header checksum follows its name; then as the second
        // member of a file.
        let mut checked = plain.clone();
        checked[3] |= FHCRC;
        let end_of_name = 10 + checked[10..].iter().position(|&b| b == 0).unwrap() + 1;
        checked.splice(end_of_name..end_of_name, [0x12, 0x34]);
        let mut second = plain.clone();
        second.extend(&checked);
        for gz in [&checked, &second] {
            assert_eq!(inflate_whole(gz), None);
            assert_eq!(streamed(gz), None, "the streaming inflater checks it");
        }
        assert_eq!(inflate_whole(&plain).as_deref(), Some(&b"hello\n"[..]));
    }

    #[test]
    fn more_stored_bytes_than_it_inflates_at_once_are_declined() {
        let mut big = vec![0u8; MOST_TEXT + 1];
        big[..4].copy_from_slice(&[0x1f, 0x8b, 8, 0]);
        assert_eq!(inflate_whole(&big), None);
    }

    #[test]
    fn a_bomb_is_declined_not_inflated() {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MOST_TEXT >> 20) + 1 {
            enc.write_all(&zeros).unwrap();
        }
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 200 << 10, "{}", gz.len());
        assert!(inflate_whole(&gz).is_none());
    }

    proptest::proptest! {
        /// Whatever bytes it is given, it never reads a text other than the streaming inflater's.
        /// (It may read what that one refuses: libdeflate accepts some Huffman tables zlib
        /// deems invalid when the text they give passes the members' CRC-32 and size, as a bit
        /// flipped in this test's first case does. Both replay modes ask it first.)
        #[test]
        fn never_reads_other_than_the_streaming_way(
            flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 0..4),
            cut in 0usize..4096,
        ) {
            let text = b"{\"eventName\":\"GetObject\",\"n\":1}\n".repeat(60);
            let mut gz = gzip(&text);
            gz.extend(gzip(b"{\"eventName\":\"b\"}\n"));
            for (at, byte) in flips {
                let at = at % gz.len();
                gz[at] ^= byte;
            }
            gz.truncate(cut.max(2).min(gz.len()));
            if let (Some(whole), Some(streamed)) = (inflate_whole(&gz), streamed(&gz)) {
                proptest::prop_assert_eq!(whole, streamed);
            }
        }
    }
}
