//! Starting a producer with a test module's standard settings.

use herald_actors::Producer;

/// A producer on `bootstrap` with `defaults`, each overridden (or added to) by `extra`, so that
/// a test names only the settings it changes.
pub fn start_producer<'a>(
    bootstrap: &'a str,
    defaults: &[(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Producer {
    let mut pairs: Vec<(&str, &str)> = vec![("bootstrap.servers", bootstrap)];
    pairs.extend_from_slice(defaults);
    for &(k, v) in extra {
        match pairs.iter_mut().find(|(pk, _)| *pk == k) {
            Some(p) => p.1 = v,
            None => pairs.push((k, v)),
        }
    }
    Producer::from_pairs(pairs).expect("valid config")
}

/// Waits (up to 10 s) until the producer's batches hold all of buffer.memory.
pub async fn until_batches_hold_all_memory(producer: &Producer) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while producer.metrics().await.buffer_available_bytes != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the batches hold no memory after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
