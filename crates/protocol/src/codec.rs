//! The frame codec: a 4-byte big-endian payload length, then one UTF-8 JSON object.
//!
//! One codec type serves both channels and both directions: `FrameCodec<In, Out>` decodes `In` and
//! encodes `Out`. The supervisor reads the control channel with `FrameCodec<ControlResponse,
//! ControlRequest>`; the worker side (Python) mirrors it.
//!
//! A frame longer than [`MAX_FRAME_LEN`] or a payload that is not a valid message is an error value on
//! that channel, never a panic. After an oversized length the byte stream cannot be trusted any more,
//! so callers treat every decode error as the end of that channel.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use crate::{ProtocolError, MAX_FRAME_LEN};

const HEADER_LEN: usize = 4;

/// Decodes frames into `In` and encodes `Out` into frames.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    max_len: usize,
    _marker: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec with the protocol's frame limit, [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_len(MAX_FRAME_LEN)
    }

    /// A codec with another frame limit (tests use small ones).
    pub fn with_max_len(max_len: usize) -> Self {
        Self {
            max_len,
            _marker: PhantomData,
        }
    }
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&src[..HEADER_LEN]);
        let len = u32::from_be_bytes(header) as usize;
        if len > self.max_len {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_len,
            });
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len);
        serde_json::from_slice(&payload)
            .map(Some)
            .map_err(|source| ProtocolError::Malformed { len, source })
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = ProtocolError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        // The JSON is written straight after a placeholder header (no separate payload buffer), and
        // the header is filled in once the length is known; a refused frame leaves `dst` as it was.
        let start = dst.len();
        dst.put_u32(0);
        let written = serde_json::to_writer((&mut *dst).writer(), &item);
        let len = dst.len() - start - HEADER_LEN;
        if let Err(e) = written {
            dst.truncate(start);
            return Err(ProtocolError::Encode(e));
        }
        if len > self.max_len {
            dst.truncate(start);
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_len,
            });
        }
        // The length fits in u32: it is at most `max_len`, which is far below 4 GiB in practice, and
        // `try_from` turns any larger limit into an error instead of a wrapped length.
        let Ok(header) = u32::try_from(len) else {
            dst.truncate(start);
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: u32::MAX as usize,
            });
        };
        dst[start..start + HEADER_LEN].copy_from_slice(&header.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ControlRequest, ControlResponse, SlotId};

    type WorkerSide = FrameCodec<ControlRequest, ControlResponse>;
    type SupervisorSide = FrameCodec<ControlResponse, ControlRequest>;

    fn frame(payload: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_u32(payload.len() as u32);
        buf.extend_from_slice(payload);
        buf
    }

    #[test]
    fn round_trip() {
        let mut buf = BytesMut::new();
        SupervisorSide::new()
            .encode(ControlRequest::Shutdown, &mut buf)
            .expect("encode");
        assert_eq!(&buf[..4], &[0, 0, 0, 19]);
        let decoded = WorkerSide::new().decode(&mut buf).expect("decode");
        assert_eq!(decoded, Some(ControlRequest::Shutdown));
        assert!(buf.is_empty());
    }

    #[test]
    fn split_frame_waits_for_every_byte() {
        let whole = frame(br#"{"type":"idle","slot":3}"#);
        let mut codec = SupervisorSide::new();
        let mut buf = BytesMut::new();
        // Feed one byte at a time: nothing decodes until the last byte arrives.
        for (i, byte) in whole.iter().enumerate() {
            buf.put_u8(*byte);
            let got = codec.decode(&mut buf).expect("no error on a partial frame");
            if i + 1 < whole.len() {
                assert_eq!(got, None, "decoded early at byte {i}");
            } else {
                assert_eq!(got, Some(ControlResponse::Idle { slot: SlotId(3) }));
            }
        }
    }

    #[test]
    fn two_frames_in_one_read() {
        let mut buf = frame(br#"{"type":"shutting_down"}"#);
        buf.extend_from_slice(&frame(br#"{"type":"idle","slot":0}"#));
        let mut codec = SupervisorSide::new();
        assert_eq!(
            codec.decode(&mut buf).expect("first"),
            Some(ControlResponse::ShuttingDown)
        );
        assert_eq!(
            codec.decode(&mut buf).expect("second"),
            Some(ControlResponse::Idle { slot: SlotId(0) })
        );
        assert_eq!(codec.decode(&mut buf).expect("empty"), None);
    }

    #[test]
    fn oversized_length_is_an_error_before_the_payload_arrives() {
        let mut buf = BytesMut::new();
        buf.put_u32((MAX_FRAME_LEN + 1) as u32);
        let err = SupervisorSide::new().decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, ProtocolError::FrameTooLarge { len, max } if len == MAX_FRAME_LEN + 1 && max == MAX_FRAME_LEN),
            "{err}"
        );
    }

    #[test]
    fn oversized_message_is_not_encoded() {
        let mut codec = FrameCodec::<ControlResponse, ControlResponse>::with_max_len(64);
        let mut buf = BytesMut::new();
        let err = codec
            .encode(
                ControlResponse::Fatal {
                    reason: "x".repeat(100),
                },
                &mut buf,
            )
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::FrameTooLarge { max: 64, .. }),
            "{err}"
        );
        assert!(buf.is_empty(), "nothing written for a refused frame");
    }

    #[test]
    fn frames_append_and_a_refused_one_leaves_the_earlier_ones_intact() {
        let mut codec = FrameCodec::<ControlResponse, ControlResponse>::with_max_len(64);
        let mut buf = BytesMut::new();
        codec
            .encode(ControlResponse::ShuttingDown, &mut buf)
            .expect("first");
        let first = buf.clone();
        assert_eq!(first, frame(br#"{"type":"shutting_down"}"#));
        codec
            .encode(
                ControlResponse::Fatal {
                    reason: "x".repeat(100),
                },
                &mut buf,
            )
            .unwrap_err();
        assert_eq!(buf, first, "a refused frame leaves no bytes behind");
        codec
            .encode(ControlResponse::Idle { slot: SlotId(2) }, &mut buf)
            .expect("third");
        let mut expected = first;
        expected.extend_from_slice(&frame(br#"{"type":"idle","slot":2}"#));
        assert_eq!(buf, expected);
    }

    #[test]
    fn malformed_json_is_an_error_value() {
        let mut buf = frame(b"{not json");
        let err = SupervisorSide::new().decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Malformed { len: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn unknown_message_type_is_an_error_value() {
        let mut buf = frame(br#"{"type":"launch_missiles"}"#);
        let err = SupervisorSide::new().decode(&mut buf).unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed { .. }), "{err}");
    }

    #[test]
    fn invalid_utf8_is_an_error_value() {
        let mut buf = frame(&[0xff, 0xfe, 0xfd]);
        let err = SupervisorSide::new().decode(&mut buf).unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed { .. }), "{err}");
    }
}
