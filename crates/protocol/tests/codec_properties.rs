//! Property tests of the frame codec: every message round-trips through a frame, however the bytes are
//! split; random byte streams never panic the decoder; frames over the limit are rejected, on both
//! the decoding and the encoding side.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use cogvisor_protocol::{
    ControlRequest, ControlResponse, FileOutputKind, FrameCodec, HealthcheckStatus, LogLevel,
    LogSource, MetricMode, Mode, ProtocolError, SchemaRefs, SetupMode, SlotId, SlotRequest,
    SlotResponse, SlotSocket, MAX_FRAME_LEN,
};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

// ------------------------------------------------------------------------------------------------
// Strategies

/// Numbers that print and parse back exactly: integers, and binary fractions with at most 15
/// significant decimal digits (serde_json parses those exactly without `float_roundtrip`).
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (any::<i16>(), 0u32..10)
            .prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(1u32 << e))),
    ]
}

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON value for an `Option<Value>` field. `Some(null)` is left out on purpose: it is written as
/// `null` and read back as `None`, which carry the same meaning on the wire.
fn some_json() -> impl Strategy<Value = Value> {
    json().prop_filter("null reads back as None", |v| !v.is_null())
}

fn text() -> impl Strategy<Value = String> {
    any::<String>()
}

fn slot() -> impl Strategy<Value = SlotId> {
    any::<u32>().prop_map(SlotId)
}

fn control_request() -> impl Strategy<Value = ControlRequest> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u64>(),
            text(),
            prop_oneof![Just(Mode::Predict), Just(Mode::Train)],
            prop_oneof![Just(SetupMode::Full), Just(SetupMode::Recycle)],
            text(),
            prop::collection::vec(
                (slot(), text()).prop_map(|(slot, socket)| SlotSocket { slot, socket }),
                0..4
            ),
            prop::option::of(
                (prop::option::of(text()), prop::option::of(text()))
                    .prop_map(|(predict, train)| SchemaRefs { predict, train })
            ),
        )
            .prop_map(
                |(
                    protocol_version,
                    generation,
                    predictor_ref,
                    mode,
                    setup,
                    runtime_dir,
                    slots,
                    schema_refs,
                )| {
                    ControlRequest::Init {
                        protocol_version,
                        generation,
                        predictor_ref,
                        mode,
                        setup,
                        runtime_dir,
                        slots,
                        schema_refs,
                    }
                }
            ),
        (slot(), text()).prop_map(|(slot, id)| ControlRequest::Cancel { slot, id }),
        text().prop_map(|id| ControlRequest::Healthcheck { id }),
        Just(ControlRequest::Shutdown),
    ]
}

fn log_source() -> impl Strategy<Value = LogSource> {
    prop_oneof![Just(LogSource::Stdout), Just(LogSource::Stderr)]
}

fn control_response() -> impl Strategy<Value = ControlResponse> {
    prop_oneof![
        (text(), text(), any::<bool>(), prop::option::of(some_json())).prop_map(
            |(python_version, sdk_version, has_healthcheck, schema)| ControlResponse::Ready {
                python_version,
                sdk_version,
                has_healthcheck,
                schema,
            }
        ),
        (log_source(), text()).prop_map(|(source, data)| ControlResponse::Log { source, data }),
        (
            prop_oneof![
                Just(LogLevel::Debug),
                Just(LogLevel::Info),
                Just(LogLevel::Warning),
                Just(LogLevel::Error)
            ],
            text()
        )
            .prop_map(|(level, message)| ControlResponse::WorkerLog { level, message }),
        slot().prop_map(|slot| ControlResponse::Idle { slot }),
        (slot(), text()).prop_map(|(slot, id)| ControlResponse::Cancelled { slot, id }),
        (slot(), text()).prop_map(|(slot, error)| ControlResponse::Failed { slot, error }),
        text().prop_map(|error| ControlResponse::SetupFailed { error }),
        text().prop_map(|reason| ControlResponse::Fatal { reason }),
        (any::<u64>(), any::<u64>()).prop_map(|(count, interval_millis)| {
            ControlResponse::DroppedLogs {
                count,
                interval_millis,
            }
        }),
        (
            text(),
            prop_oneof![
                Just(HealthcheckStatus::Healthy),
                Just(HealthcheckStatus::Unhealthy)
            ],
            prop::option::of(text())
        )
            .prop_map(|(id, status, error)| ControlResponse::HealthcheckResult {
                id,
                status,
                error
            }),
        Just(ControlResponse::ShuttingDown),
        (text(), any::<bool>()).prop_map(|(reason, rerun_setup)| {
            ControlResponse::RecycleRequested {
                reason,
                rerun_setup,
            }
        }),
    ]
}

fn slot_request() -> impl Strategy<Value = SlotRequest> {
    (
        text(),
        prop::option::of(some_json()),
        prop::option::of(text()),
        text(),
        prop::collection::btree_map(text(), text(), 0..4),
    )
        .prop_map(
            |(id, input, input_file, output_dir, context): (_, _, _, _, BTreeMap<_, _>)| {
                SlotRequest::Predict {
                    id,
                    input,
                    input_file,
                    output_dir,
                    context,
                }
            },
        )
}

fn slot_response() -> impl Strategy<Value = SlotResponse> {
    let finite = (any::<i16>(), 0u32..10).prop_map(|(m, e)| f64::from(m) / f64::from(1u32 << e));
    prop_oneof![
        (log_source(), text()).prop_map(|(source, data)| SlotResponse::Log { source, data }),
        json().prop_map(|output| SlotResponse::Output { output }),
        (
            text(),
            prop_oneof![Just(FileOutputKind::File), Just(FileOutputKind::Oversized)],
            prop::option::of(text())
        )
            .prop_map(|(filename, kind, mime_type)| SlotResponse::FileOutput {
                filename,
                kind,
                mime_type
            }),
        (
            text(),
            json(),
            prop_oneof![
                Just(MetricMode::Replace),
                Just(MetricMode::Increment),
                Just(MetricMode::Append)
            ]
        )
            .prop_map(|(name, value, mode)| SlotResponse::Metric { name, value, mode }),
        (text(), finite, any::<bool>()).prop_map(|(id, predict_time, is_stream)| {
            SlotResponse::Done {
                id,
                predict_time,
                is_stream,
            }
        }),
        (text(), text()).prop_map(|(id, error)| SlotResponse::Failed { id, error }),
        text().prop_map(|id| SlotResponse::Cancelled { id }),
    ]
}

// ------------------------------------------------------------------------------------------------
// Helpers

/// Encodes every message into one buffer, then feeds it to a fresh decoder in the pieces `cuts`
/// describes, and returns what it decoded.
fn round_trip<M>(messages: &[M], cuts: &[usize]) -> Vec<M>
where
    M: Serialize + DeserializeOwned + Clone,
{
    let mut encoder = FrameCodec::<M, M>::new();
    let mut wire = BytesMut::new();
    for m in messages {
        encoder
            .encode(m.clone(), &mut wire)
            .expect("a message within the limit encodes");
    }
    let mut decoder = FrameCodec::<M, M>::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = &wire[..];
    let mut cuts = cuts.iter();
    while !rest.is_empty() {
        let take = cuts.next().map_or(rest.len(), |c| (c % rest.len()) + 1);
        buf.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        while let Some(m) = decoder.decode(&mut buf).expect("a valid stream decodes") {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    out
}

fn frame(payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(u32::try_from(payload.len()).expect("test payloads are small"));
    buf.extend_from_slice(payload);
    buf
}

// ------------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn control_requests_round_trip(
        messages in prop::collection::vec(control_request(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        prop_assert_eq!(round_trip(&messages, &cuts), messages);
    }

    #[test]
    fn control_responses_round_trip(
        messages in prop::collection::vec(control_response(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        prop_assert_eq!(round_trip(&messages, &cuts), messages);
    }

    #[test]
    fn slot_requests_round_trip(
        messages in prop::collection::vec(slot_request(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        prop_assert_eq!(round_trip(&messages, &cuts), messages);
    }

    #[test]
    fn slot_responses_round_trip(
        messages in prop::collection::vec(slot_response(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        prop_assert_eq!(round_trip(&messages, &cuts), messages);
    }

    /// Whatever arrives, the decoder answers "need more", a message or an error value, and never
    /// panics; after an error the caller drops the channel, so decoding stops there.
    #[test]
    fn random_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut codec = FrameCodec::<ControlResponse, ControlRequest>::new();
        let mut buf = BytesMut::new();
        'feed: for chunk in chunks {
            buf.extend_from_slice(&chunk);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(ProtocolError::FrameTooLarge { len, max }) => {
                        prop_assert!(len > max);
                        break 'feed;
                    }
                    Err(ProtocolError::Malformed { .. }) => break 'feed,
                    Err(other) => prop_assert!(false, "unexpected decode error: {other}"),
                }
            }
        }
    }

    /// Frames whose payload is random bytes (often valid JSON of the wrong shape, usually not JSON at
    /// all) are a `Malformed` error or a message, never a panic, and consume exactly their frame.
    #[test]
    fn random_payloads_in_valid_frames_are_errors_not_panics(
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            json().prop_map(|v| serde_json::to_vec(&v).expect("serializes")),
        ],
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut buf = frame(&payload);
        buf.extend_from_slice(&tail);
        let mut codec = FrameCodec::<SlotResponse, SlotRequest>::new();
        match codec.decode(&mut buf) {
            Ok(Some(_)) | Err(ProtocolError::Malformed { .. }) => {
                prop_assert_eq!(&buf[..], &tail[..], "the frame, and only it, is consumed");
            }
            other => prop_assert!(false, "a complete frame gave {other:?}"),
        }
    }

    /// A header announcing more than the limit is rejected at once, before any payload arrives, and
    /// whatever follows it.
    #[test]
    fn oversized_frames_are_rejected(
        len in (MAX_FRAME_LEN as u64 + 1)..=u64::from(u32::MAX),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut buf = BytesMut::new();
        buf.put_u32(u32::try_from(len).expect("in range"));
        buf.extend_from_slice(&tail);
        let err = FrameCodec::<ControlResponse, ControlRequest>::new()
            .decode(&mut buf)
            .expect_err("over the limit");
        let expected_len = usize::try_from(len).expect("fits");
        prop_assert!(
            matches!(err, ProtocolError::FrameTooLarge { len, max } if len == expected_len && max == MAX_FRAME_LEN),
            "{}", err
        );
    }

    /// With any limit, a frame of exactly the limit is accepted and one byte more is not; an encoder
    /// refuses a message over its limit and writes nothing.
    #[test]
    fn the_limit_is_exact(data in "[a-z]{0,200}", slack in 0usize..40) {
        let message = ControlResponse::Fatal { reason: data };
        let payload = serde_json::to_vec(&message).expect("serializes");
        let limit = payload.len();

        let mut buf = frame(&payload);
        let decoded = FrameCodec::<ControlResponse, ControlRequest>::with_max_len(limit)
            .decode(&mut buf)
            .expect("a frame at the limit decodes");
        prop_assert_eq!(decoded.as_ref(), Some(&message));

        let mut buf = frame(&payload);
        let err = FrameCodec::<ControlResponse, ControlRequest>::with_max_len(limit - 1)
            .decode(&mut buf)
            .expect_err("one byte over the limit");
        prop_assert!(matches!(err, ProtocolError::FrameTooLarge { .. }), "{}", err);

        let mut out = BytesMut::new();
        let small = limit.saturating_sub(1 + slack);
        let err = FrameCodec::<ControlRequest, ControlResponse>::with_max_len(small)
            .encode(message.clone(), &mut out)
            .expect_err("over the encoder's limit");
        prop_assert!(matches!(err, ProtocolError::FrameTooLarge { .. }), "{}", err);
        prop_assert!(out.is_empty(), "nothing written for a refused frame");
    }

    /// A frame cut anywhere before its end decodes as "need more" and consumes nothing.
    #[test]
    fn a_partial_frame_waits(message in control_response(), cut in any::<prop::sample::Index>()) {
        let mut whole = BytesMut::new();
        FrameCodec::<ControlRequest, ControlResponse>::new()
            .encode(message, &mut whole)
            .expect("encodes");
        let at = cut.index(whole.len());
        let mut buf = BytesMut::from(&whole[..at]);
        let got = FrameCodec::<ControlResponse, ControlRequest>::new()
            .decode(&mut buf)
            .expect("a partial frame is not an error");
        prop_assert!(got.is_none());
        prop_assert_eq!(buf.len(), at);
    }
}
