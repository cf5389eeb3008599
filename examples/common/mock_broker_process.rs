//! librdkafka's mock cluster in a process of its own (`examples/mock_broker.rs`), so that a
//! benchmark measures a client's CPU and memory without the broker's. Shared by the `bench`
//! and `console_bench` examples.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `mock_broker`; stopped (and reaped) by closing its stdin on drop.
#[derive(Debug)]
pub struct MockBrokerProcess {
    child: Child,
    /// `host:port,...` of its brokers.
    pub bootstrap: String,
}

impl MockBrokerProcess {
    /// Starts `exe` with `brokers` brokers and `topic` of `partitions` partitions; waits for
    /// the bootstrap servers it prints.
    pub fn start(
        exe: &Path,
        brokers: i32,
        topic: &str,
        partitions: i32,
    ) -> Result<MockBrokerProcess, Box<dyn std::error::Error + Send + Sync>> {
        let mut child = Command::new(exe)
            .args(["--brokers", &brokers.to_string(), "--topic", topic])
            .args(["--partitions", &partitions.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("mock_broker stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let bootstrap = line.trim().to_string();
        if bootstrap.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err("mock_broker exited without printing its bootstrap servers".into());
        }
        Ok(MockBrokerProcess { child, bootstrap })
    }
}

impl Drop for MockBrokerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
