//! read_frame: framing, EOF handling and size validation before allocation.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::executor::block_on;
use futures::io::{AsyncRead, Cursor};
use tern_net::{FrameError, FrameLimits, read_frame};

fn limits(max: usize) -> FrameLimits {
    FrameLimits {
        max_request_bytes: max,
    }
}

#[test]
fn reads_exact_frames_back_to_back() {
    let mut data = Vec::new();
    data.extend_from_slice(&5i32.to_be_bytes());
    data.extend_from_slice(b"hello");
    data.extend_from_slice(&0i32.to_be_bytes());
    data.extend_from_slice(&3i32.to_be_bytes());
    data.extend_from_slice(b"abc");
    let mut r = Cursor::new(data);
    let l = limits(100);
    let f1 = block_on(read_frame(&mut r, &l)).unwrap().unwrap();
    assert_eq!(&f1[..], b"hello");
    assert_eq!(f1.capacity(), 5);
    let f2 = block_on(read_frame(&mut r, &l)).unwrap().unwrap();
    assert!(f2.is_empty());
    let f3 = block_on(read_frame(&mut r, &l)).unwrap().unwrap();
    assert_eq!(&f3[..], b"abc");
    assert!(block_on(read_frame(&mut r, &l)).unwrap().is_none());
}

#[test]
fn frame_at_exactly_the_limit_is_accepted() {
    let mut data = 8i32.to_be_bytes().to_vec();
    data.extend_from_slice(&[7; 8]);
    let f = block_on(read_frame(&mut Cursor::new(data), &limits(8)))
        .unwrap()
        .unwrap();
    assert_eq!(&f[..], &[7; 8]);
}

#[test]
fn clean_eof_is_none() {
    let mut r = Cursor::new(Vec::<u8>::new());
    assert!(
        block_on(read_frame(&mut r, &FrameLimits::default()))
            .unwrap()
            .is_none()
    );
}

#[test]
fn eof_inside_size_or_body_is_an_error() {
    for data in [vec![0u8, 0], {
        let mut d = 10i32.to_be_bytes().to_vec();
        d.extend_from_slice(b"short");
        d
    }] {
        match block_on(read_frame(&mut Cursor::new(data), &limits(100))) {
            Err(FrameError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Declares a huge frame and then yields bytes forever, counting what was read from it.
struct HugeReader {
    prefix: [u8; 4],
    consumed: usize,
}

impl AsyncRead for HugeReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len();
        for (i, b) in buf.iter_mut().enumerate() {
            let pos = self.consumed + i;
            *b = if pos < 4 { self.prefix[pos] } else { 0xAB };
        }
        self.consumed += n;
        Poll::Ready(Ok(n))
    }
}

#[test]
fn oversized_frame_rejected_before_reading_or_allocating() {
    let mut r = HugeReader {
        prefix: i32::MAX.to_be_bytes(),
        consumed: 0,
    };
    match block_on(read_frame(&mut r, &limits(1024))) {
        Err(FrameError::TooLarge { size, max }) => {
            assert_eq!(size, i64::from(i32::MAX));
            assert_eq!(max, 1024);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Only the size prefix was read: nothing of the body was consumed or buffered.
    assert_eq!(r.consumed, 4);

    let mut r = HugeReader {
        prefix: 1025i32.to_be_bytes(),
        consumed: 0,
    };
    assert!(matches!(
        block_on(read_frame(&mut r, &limits(1024))),
        Err(FrameError::TooLarge { size: 1025, .. })
    ));
}

#[test]
fn negative_size_rejected() {
    for size in [-1i32, i32::MIN] {
        let mut r = HugeReader {
            prefix: size.to_be_bytes(),
            consumed: 0,
        };
        match block_on(read_frame(&mut r, &FrameLimits::default())) {
            Err(FrameError::Negative(s)) => assert_eq!(s, size),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(r.consumed, 4);
    }
}
