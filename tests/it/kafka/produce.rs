//! Every codec x every acks value on Apache Kafka, read back with librdkafka's consumer: keys,
//! null keys, values, headers, timestamps, the murmur2 partition of every keyed record, and
//! reported offsets equal to the offsets read back (the checks of `crate::produce`).

use crate::produce::{produce_and_verify, ACKS, CODECS};
use crate::support::kafka::{shared, SharedLogsOnFailure};
use crate::support::{init_tracing, unique_topic};

#[actix_rt::test]
async fn kafka_every_codec_and_acks() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    for codec in CODECS {
        for acks in ACKS {
            let topic = unique_topic(&format!("kafka-{codec}-{acks}"));
            kafka.create_topic(&topic, 3, 1).await;
            // Apache Kafka reports -1 as LogAppendTime for CreateTime topics: the record's
            // own timestamp is the one reported, as in Java.
            produce_and_verify(
                &kafka.bootstrap(),
                &topic,
                3,
                500,
                &[("compression.type", codec), ("acks", acks)],
                None,
            )
            .await;
        }
    }
}
