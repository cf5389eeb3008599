use std::time::Duration;

use herald_actors::{Outcome, Produce, ProduceBatch, Producer};

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS");
    let servers = servers.as_deref().unwrap_or("localhost:9092");
    let producer = Producer::from_pairs([("bootstrap.servers", servers), ("linger.ms", "5")])?;

    // One record: the reply to `send` is its outcome.
    let record = Produce::new("hello").key("user-42").value("hello, world");
    print(producer.send(record).await);

    // Many records in one message to the router actor: one outcome per record, in order.
    let records = (1..=3).map(|i| Produce::new("hello").value(format!("record {i}")));
    let batch = ProduceBatch(records.collect());
    for outcome in producer.router().send(batch).await? {
        print(outcome);
    }

    producer.close(Duration::from_secs(10)).await;
    Ok(())
}

fn print(outcome: Outcome) {
    match outcome {
        Ok(md) => println!("{}-{} at offset {}", md.topic, md.partition, md.offset),
        Err(e) => println!("not written: {e}"),
    }
}
