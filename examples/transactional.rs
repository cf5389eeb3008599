use std::time::Duration;

use herald::ErrorClass;
use herald_actors::{ConsumerGroupMetadata, Produce, Producer, TopicPartitionOffset};

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS");
    let servers = servers.as_deref().unwrap_or("localhost:9092");
    let producer = Producer::from_pairs([
        ("bootstrap.servers", servers),
        ("transactional.id", "orders-enricher-1"),
    ])?;
    // Fences older producers with this id and aborts what they left open.
    producer.init_transactions().await?;

    producer.begin_transaction().await?;
    let enriched = producer.send(Produce::new("enriched").key("order-7").value("..."));
    let audit = producer.send(Produce::new("audit").value("order-7 enriched"));
    // The input's offsets commit with the transaction: the next offset to consume.
    let offsets = vec![TopicPartitionOffset::new("orders", 0, 42)];
    let group = ConsumerGroupMetadata::new("enricher");
    producer.send_offsets_to_transaction(offsets, group).await?;
    match producer.commit_transaction().await {
        Ok(()) => println!("committed: {:?} {:?}", enriched.await?, audit.await?),
        // Fenced, or not authorized: this producer is done.
        Err(e) if e.class() == ErrorClass::Fatal => return Err(e.into()),
        // Timed out (max.block.ms): the commit may have reached the coordinator, so it is
        // called again; an abort is refused until it completes.
        Err(e) if e.class() == ErrorClass::Retriable => producer.commit_transaction().await?,
        // Abortable (a record failed, the transaction timed out...): abort and go on.
        Err(e) => {
            println!("not committed: {e}");
            producer.abort_transaction().await?;
        }
    }

    producer.close(Duration::from_secs(10)).await;
    Ok(())
}
