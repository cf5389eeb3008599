//! Herald's record batches against other implementations:
//!
//! - kafka-protocol's `RecordBatchDecoder` must read what `BatchBuilder` writes, with every
//!   codec;
//! - librdkafka's bytes, captured from a real producer by our fake broker, must equal what
//!   `BatchBuilder` writes for the same records (uncompressed), and must decode with
//!   `decode_batch` (every codec).
//!
//! The captured batches are committed under `tests/fixtures/librdkafka_batch_<codec>.bin`, so
//! the fixture tests run without librdkafka. `HERALD_REGENERATE_FIXTURES=1` rewrites them from
//! a fresh capture.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use herald::batch::decode::{decode_batch, DecodedRecord};
use herald::batch::{BatchBuilder, ProducerIds};
use herald::compression::Compression;
use herald::Header;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header as RdHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::fake_broker::{standard_handler, FakeBroker};

const ALL_CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// The compressed codecs captured from librdkafka. Not zstd: the dev-dependency's librdkafka
/// is built without libzstd (rdkafka's `zstd` feature is off).
const LIBRDKAFKA_CODECS: [Compression; 3] =
    [Compression::Gzip, Compression::Snappy, Compression::Lz4];

const TOPIC: &str = "fixtures";

/// One record of a test batch.
#[derive(Debug, Clone)]
struct Rec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Rec {
    fn herald_headers(&self) -> Vec<Header> {
        self.headers
            .iter()
            .map(|(k, v)| Header {
                key: k.clone().into(),
                value: v.clone().map(Bytes::from),
            })
            .collect()
    }
}

/// ~100 varied records: null, empty and long keys and values, 0-3 headers with null and
/// empty values and non-ASCII keys, timestamps that go backwards. Header keys are unique
/// within a record (kafka-protocol keeps headers in a map).
fn varied_records(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let key = match i % 6 {
                0 => None,
                1 => Some(Vec::new()),
                2 => Some(format!("key-{i}").into_bytes()),
                3 => Some(vec![i as u8; 300 + i]),
                _ => Some((i as u32).to_be_bytes().to_vec()),
            };
            let value = match i % 5 {
                0 => None,
                1 => Some(Vec::new()),
                2 => Some(format!("value {i} ").repeat(i % 17 + 1).into_bytes()),
                _ => Some((0..(i * 37) % 900).map(|j| (j * 31 + i) as u8).collect()),
            };
            let headers = (0..i % 4)
                .map(|h| {
                    let key = if h == 2 {
                        format!("clé-{h}")
                    } else {
                        format!("h{h}")
                    };
                    let value = match (i + h) % 3 {
                        0 => None,
                        1 => Some(Vec::new()),
                        _ => Some(format!("v{i}.{h}").into_bytes()),
                    };
                    (key, value)
                })
                .collect();
            // Mostly increasing, with steps back and repeats.
            let timestamp = 1_700_000_000_000 + (i as i64) * 10 - if i % 7 == 3 { 500 } else { 0 };
            Rec {
                timestamp,
                key,
                value,
                headers,
            }
        })
        .collect()
}

fn build(records: &[Rec], codec: Compression, ids: ProducerIds, transactional: bool) -> Bytes {
    let mut b = BatchBuilder::new(1 << 20, codec, None);
    b.set_transactional(transactional);
    for r in records {
        b.try_append(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.herald_headers(),
        )
        .expect("records fit");
    }
    b.close(ids).expect("close")
}

fn expected(records: &[Rec]) -> Vec<DecodedRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| DecodedRecord {
            offset_delta: i as i32,
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r.herald_headers(),
        })
        .collect()
}

/// Test A: kafka-protocol reads every field of what our builder writes, with every codec.
#[test]
fn kafka_protocol_decodes_our_batches() {
    let records = varied_records(100);
    for (n, codec) in ALL_CODECS.into_iter().enumerate() {
        let ids = ProducerIds {
            producer_id: 4242 + n as i64,
            producer_epoch: 3,
            base_sequence: 1000 * n as i32,
        };
        let transactional = n % 2 == 1;
        let mut bytes = build(&records, codec, ids, transactional);
        let set = RecordBatchDecoder::decode(&mut bytes)
            .unwrap_or_else(|e| panic!("kafka-protocol refused our {codec:?} batch: {e:#}"));
        assert!(
            bytes.is_empty(),
            "{codec:?}: kafka-protocol left bytes over"
        );
        assert_eq!(set.version, 2);
        assert_eq!(
            set.compression as u8,
            codec.attribute_bits() as u8,
            "{codec:?}"
        );
        assert_eq!(set.records.len(), records.len(), "{codec:?}");
        for (i, (got, want)) in set.records.iter().zip(&records).enumerate() {
            let ctx = format!("{codec:?} record {i}");
            assert_eq!(got.offset, i as i64, "{ctx}");
            assert_eq!(got.timestamp, want.timestamp, "{ctx}");
            assert_eq!(got.key.as_deref(), want.key.as_deref(), "{ctx}");
            assert_eq!(got.value.as_deref(), want.value.as_deref(), "{ctx}");
            let headers: Vec<(String, Option<Vec<u8>>)> = got
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_vec())))
                .collect();
            assert_eq!(headers, want.headers, "{ctx}");
            assert_eq!(got.producer_id, ids.producer_id, "{ctx}");
            assert_eq!(got.producer_epoch, ids.producer_epoch, "{ctx}");
            assert_eq!(got.sequence, ids.base_sequence + i as i32, "{ctx}");
            assert_eq!(got.transactional, transactional, "{ctx}");
            assert!(!got.control, "{ctx}");
            assert_eq!(got.partition_leader_epoch, -1, "{ctx}");
        }
    }
}

/// The records of test B: 20 records as librdkafka can express them.
fn librdkafka_records() -> Vec<Rec> {
    let mut records = varied_records(20);
    // One header key twice in a record: both clients keep duplicates in order.
    records[5].headers = vec![
        ("dup".into(), Some(b"first".to_vec())),
        ("dup".into(), Some(b"second".to_vec())),
    ];
    records
}

fn fixture_path(codec: Compression) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("librdkafka_batch_{}.bin", codec.name()))
}

fn regenerate() -> bool {
    std::env::var("HERALD_REGENERATE_FIXTURES").is_ok_and(|v| v == "1")
}

/// Produces `records` to partition 0 with librdkafka against our fake broker and returns
/// the `records` field of the one ProduceRequest it sends.
async fn capture_librdkafka_batch(codec: Compression, records: &[Rec]) -> Bytes {
    let broker = FakeBroker::start(standard_handler(&[(TOPIC, 1)]));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "false")
        .set("acks", "1")
        .set("linger.ms", "100")
        .set("compression.type", codec.name())
        .set("batch.num.messages", "100000")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("librdkafka producer");
    let deliveries: Vec<_> = records
        .iter()
        .map(|r| {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (key, value) in &r.headers {
                headers = headers.insert(RdHeader {
                    key,
                    value: value.as_deref(),
                });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(TOPIC)
                .partition(0)
                .timestamp(r.timestamp)
                .headers(headers);
            if let Some(key) = &r.key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = &r.value {
                record = record.payload(value.as_slice());
            }
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    let outcomes = tokio::time::timeout(Duration::from_secs(15), join_all(deliveries))
        .await
        .unwrap_or_else(|_| {
            let seen: Vec<_> = broker
                .requests()
                .iter()
                .map(|r| (r.connection, r.api_key, r.api_version))
                .collect();
            panic!("librdkafka did not deliver within 15 s; requests seen: {seen:?}")
        });
    for outcome in outcomes {
        outcome.expect("delivery future").expect("delivered");
    }
    drop(producer);
    let produce = broker.requests_for(ApiKey::Produce);
    assert_eq!(
        produce.len(),
        1,
        "librdkafka sent {} ProduceRequests",
        produce.len()
    );
    let request: ProduceRequest = produce[0].decode();
    assert_eq!(request.acks, 1);
    assert_eq!(request.topic_data.len(), 1);
    let partitions = &request.topic_data[0].partition_data;
    assert_eq!(partitions.len(), 1);
    assert_eq!(partitions[0].index, 0);
    partitions[0].records.clone().expect("records field")
}

/// The one field where librdkafka's batch differs from ours: librdkafka writes
/// `partitionLeaderEpoch = 0` (`rd_kafka_msgset_writer_write_MessageSet_v2_header`), Herald
/// writes -1 as the Java producer does (`RecordBatch.NO_PARTITION_LEADER_EPOCH`). Harmless:
/// the field is outside the CRC and the partition leader overwrites it when it appends the
/// batch (KIP-101), so a producer's value is never read.
const LIBRDKAFKA_LEADER_EPOCH: i32 = 0;

/// Byte range of `partitionLeaderEpoch` in a batch.
const LEADER_EPOCH_BYTES: std::ops::Range<usize> = 12..16;

/// librdkafka's batch with its partitionLeaderEpoch rewritten to Herald's -1, after checking
/// that it was librdkafka's 0; everything else is left byte for byte.
fn normalize_leader_epoch(theirs: &[u8]) -> Vec<u8> {
    let epoch = i32::from_be_bytes(theirs[LEADER_EPOCH_BYTES].try_into().unwrap());
    assert_eq!(
        epoch, LIBRDKAFKA_LEADER_EPOCH,
        "librdkafka's partitionLeaderEpoch"
    );
    let mut v = theirs.to_vec();
    v[LEADER_EPOCH_BYTES].copy_from_slice(&(-1i32).to_be_bytes());
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Test B: librdkafka's uncompressed batch for the same records is byte for byte ours.
#[tokio::test(flavor = "multi_thread")]
async fn librdkafka_uncompressed_batch_is_byte_identical() {
    let records = librdkafka_records();
    let theirs = capture_librdkafka_batch(Compression::None, &records).await;
    let ours = build(&records, Compression::None, ProducerIds::NONE, false);
    assert_eq!(
        hex(&normalize_leader_epoch(&theirs)),
        hex(&ours),
        "librdkafka (left, partitionLeaderEpoch normalized) vs BatchBuilder (right)"
    );
    if regenerate() {
        std::fs::write(fixture_path(Compression::None), &theirs).expect("write fixture");
    }
}

/// The committed librdkafka fixture still equals what our builder writes (no librdkafka
/// needed).
#[test]
fn committed_uncompressed_fixture_matches_builder() {
    let fixture = std::fs::read(fixture_path(Compression::None)).expect("committed fixture");
    let ours = build(
        &librdkafka_records(),
        Compression::None,
        ProducerIds::NONE,
        false,
    );
    assert_eq!(
        hex(&normalize_leader_epoch(&fixture)),
        hex(&ours),
        "fixture (left, partitionLeaderEpoch normalized) vs BatchBuilder (right)"
    );
}

/// librdkafka's compressed batches decode to the records it was given.
#[tokio::test(flavor = "multi_thread")]
async fn librdkafka_compressed_batches_decode() {
    let records = librdkafka_records();
    let codecs = &LIBRDKAFKA_CODECS;
    let captured = join_all(
        codecs
            .iter()
            .map(|&c| capture_librdkafka_batch(c, &records)),
    )
    .await;
    for (&codec, theirs) in codecs.iter().zip(captured) {
        check_compressed(codec, &theirs, &records);
        if regenerate() {
            std::fs::write(fixture_path(codec), &theirs).expect("write fixture");
        }
    }
}

/// The committed compressed fixtures decode with our decoder and kafka-protocol's.
#[test]
fn committed_compressed_fixtures_decode() {
    let records = librdkafka_records();
    for codec in LIBRDKAFKA_CODECS {
        let fixture = std::fs::read(fixture_path(codec)).expect("committed fixture");
        check_compressed(codec, &fixture, &records);
        let set = RecordBatchDecoder::decode(&mut Bytes::from(fixture))
            .unwrap_or_else(|e| panic!("kafka-protocol refused the {codec:?} fixture: {e:#}"));
        assert_eq!(set.records.len(), records.len());
    }
}

fn check_compressed(codec: Compression, theirs: &[u8], records: &[Rec]) {
    let (batch, used) = decode_batch(theirs)
        .unwrap_or_else(|e| panic!("decode_batch refused librdkafka's {codec:?} batch: {e}"));
    assert_eq!(used, theirs.len());
    assert_eq!(batch.compression, codec);
    assert_eq!(batch.records, expected(records), "{codec:?}");
    // Everything but the compressed section and what depends on it (batchLength, CRC) is the
    // same as ours.
    // The partitionLeaderEpoch differs as documented at `LIBRDKAFKA_LEADER_EPOCH`.
    let ours = build(records, codec, ProducerIds::NONE, false);
    let (our_batch, _) = decode_batch(&ours).unwrap();
    assert_eq!(
        batch.partition_leader_epoch, LIBRDKAFKA_LEADER_EPOCH,
        "{codec:?}"
    );
    assert_eq!(our_batch.partition_leader_epoch, -1, "{codec:?}");
    let theirs = DecodedFields {
        partition_leader_epoch: -1,
        ..DecodedFields::of(&batch)
    };
    assert_eq!(theirs, DecodedFields::of(&our_batch), "{codec:?}");
}

/// A batch's header fields, records aside.
#[derive(Debug, PartialEq, Eq)]
struct DecodedFields {
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl DecodedFields {
    fn of(b: &herald::batch::decode::DecodedBatch) -> Self {
        DecodedFields {
            base_offset: b.base_offset,
            partition_leader_epoch: b.partition_leader_epoch,
            attributes: b.attributes,
            last_offset_delta: b.last_offset_delta,
            base_timestamp: b.base_timestamp,
            max_timestamp: b.max_timestamp,
            producer_id: b.producer_id,
            producer_epoch: b.producer_epoch,
            base_sequence: b.base_sequence,
        }
    }
}
