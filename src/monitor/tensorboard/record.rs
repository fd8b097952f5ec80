//! TFRecord framing, the container of an event file: each record is
//!
//! ```text
//! u64 length (little-endian) | u32 masked CRC-32C of those 8 bytes | data | u32 masked CRC-32C of data
//! ```
//!
//! with the CRC-32C (Castagnoli) checksum masked as TensorFlow's `crc32c::Mask` does:
//! `((crc >> 15) | (crc << 17)) + 0xa282ead8`, wrapping.
//!
//! The checksum is a table implementation of its own rather than a crate: an event file
//! checksums a few kilobytes a step, where a hardware CRC would save microseconds, and the table
//! is eight lines built at compile time (checked against the standard test vector below and, in
//! `tests/tensorboard.rs`, against a bitwise implementation and TensorBoard's files).

/// The reflected CRC-32C polynomial.
const POLY: u32 = 0x82f6_3b78;

/// The byte-at-a-time table, built at compile time.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32C of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

/// The masked CRC TFRecord stores: a CRC of data that holds CRCs is itself weak, so TensorFlow
/// rotates and offsets it (`rotate_right(15)` is the spec's `(crc >> 15) | (crc << 17)`).
pub(crate) fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `data` framed as one TFRecord, appended to `out`.
pub(crate) fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.reserve(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC catalogue's check value for CRC-32/ISCSI (= CRC-32C).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn a_frame_holds_length_data_and_both_checksums() {
        let mut out = Vec::new();
        frame(b"abc", &mut out);
        assert_eq!(out.len(), 8 + 4 + 3 + 4);
        assert_eq!(&out[..8], &3u64.to_le_bytes());
        assert_eq!(&out[8..12], &masked_crc32c(&out[..8]).to_le_bytes());
        assert_eq!(&out[12..15], b"abc");
        assert_eq!(&out[15..], &masked_crc32c(b"abc").to_le_bytes());
    }
}
