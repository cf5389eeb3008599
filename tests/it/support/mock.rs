//! librdkafka's mock cluster, in process: several brokers on loopback with fault injection.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// A running mock cluster.
pub struct Mock {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Mock {
    /// Starts `brokers` brokers. Panics (fails the test) if librdkafka cannot start them.
    pub fn start(brokers: i32) -> Mock {
        let cluster = MockCluster::new(brokers).expect("start librdkafka mock cluster");
        Mock { cluster }
    }

    /// `host:port,...` of every broker.
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic with `partitions` partitions and replication factor `rf`.
    pub fn create_topic(&self, topic: &str, partitions: i32, rf: i32) {
        self.cluster
            .create_topic(topic, partitions, rf)
            .expect("create topic on mock cluster");
    }
}
