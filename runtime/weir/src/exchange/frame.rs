//! Wire framing of a peer connection: `[length u32 LE][stream u64 LE][payload]`,
//! where `length` counts the stream id and the payload. Data streams carry
//! postcard-encoded messages; reserved stream ids carry control, credit and
//! heartbeat frames.

use std::io::{self, Read, Write};

/// Frames of the job's control protocol (coordinator ↔ workers).
pub(crate) const CONTROL: u64 = u64::MAX;
/// `[stream u64][credits u32]`: the consumer of `stream` took that many messages.
pub(crate) const CREDIT: u64 = u64::MAX - 1;
/// Keeps an idle connection alive (and proves the peer is).
pub(crate) const HEARTBEAT: u64 = u64::MAX - 2;

/// The largest frame a peer may send (a batch of big records fits easily).
pub(crate) const MAX_FRAME: usize = 256 << 20;

const HEADER: usize = 12;

/// A frame buffer with room for the header; append the payload, then [`finish`].
pub(crate) fn start(stream: u64, capacity: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + capacity);
    v.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&stream.to_le_bytes());
    v
}

/// Writes the length into a frame made by [`start`].
pub(crate) fn finish(mut frame: Vec<u8>) -> Vec<u8> {
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame
}

/// A whole frame with `payload`.
pub(crate) fn encode(stream: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = start(stream, payload.len());
    f.extend_from_slice(payload);
    finish(f)
}

/// A credit frame for `stream`.
pub(crate) fn credit(stream: u64, n: u32) -> Vec<u8> {
    let mut p = [0u8; 12];
    p[..8].copy_from_slice(&stream.to_le_bytes());
    p[8..].copy_from_slice(&n.to_le_bytes());
    encode(CREDIT, &p)
}

/// Parses a credit frame's payload.
pub(crate) fn parse_credit(p: &[u8]) -> Option<(u64, u32)> {
    if p.len() != 12 {
        return None;
    }
    let s = u64::from_le_bytes(p[..8].try_into().ok()?);
    let n = u32::from_le_bytes(p[8..].try_into().ok()?);
    Some((s, n))
}

/// Reads the next frame into `buf` (reused); returns its stream id.
pub(crate) fn read(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<u64> {
    let mut h = [0u8; HEADER];
    r.read_exact(&mut h)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if !(8..=MAX_FRAME).contains(&len) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad frame length {len}")));
    }
    let stream = u64::from_le_bytes(h[4..12].try_into().expect("8 bytes"));
    buf.clear();
    buf.resize(len - 8, 0);
    r.read_exact(buf)?;
    Ok(stream)
}

/// Writes a frame made by [`encode`] or [`finish`].
pub(crate) fn write(w: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip(frames in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut wire = Vec::new();
            for (s, p) in &frames {
                write(&mut wire, &encode(*s, p)).unwrap();
            }
            let mut r = wire.as_slice();
            let mut buf = Vec::new();
            for (s, p) in &frames {
                prop_assert_eq!(read(&mut r, &mut buf).unwrap(), *s);
                prop_assert_eq!(&buf, p);
            }
            prop_assert!(read(&mut r, &mut buf).is_err());
        }
    }

    #[test]
    fn credit_frames_parse() {
        let f = credit(42, 7);
        let mut buf = Vec::new();
        assert_eq!(read(&mut f.as_slice(), &mut buf).unwrap(), CREDIT);
        assert_eq!(parse_credit(&buf), Some((42, 7)));
        assert_eq!(parse_credit(&buf[1..]), None);
    }

    #[test]
    fn refuses_absurd_lengths() {
        let mut bad = Vec::new();
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        bad.extend_from_slice(&[0u8; 8]);
        assert!(read(&mut bad.as_slice(), &mut Vec::new()).is_err());
    }
}
