//! Apache Kafka, the broker our users run, started by the tests themselves: KRaft mode (no
//! ZooKeeper), each node a combined broker and controller in a JVM of its own on loopback.
//!
//! - The jars come from Maven Central through `scripts/kafka/install.sh` (pinned in
//!   `scripts/kafka/pom.xml`), cached under `target/`; `HERALD_KAFKA_LIBS` names the folder
//!   when `scripts/test.sh` resolved it already. A missing `java` or `mvn` fails the test.
//! - Every node listens on PLAINTEXT, SSL (client certificate requested), MTLS (an SSL
//!   listener that requires one), SASL_PLAINTEXT and SASL_SSL (PLAIN, SCRAM-SHA-256/512 and
//!   OAUTHBEARER with Kafka's unsecured-token validator). [`Certs`] makes the test CA, the
//!   server and client certificates, and a second CA nobody trusts.
//! - [`shared`] is one single-node broker for tests that only need their own topic; [`cluster`]
//!   is one three-node cluster (replication factor 3, `min.insync.replicas` 2) that one test at
//!   a time may stop, kill, freeze and restart; [`Kafka::start`] starts a private one with
//!   extra broker settings.
//! - No JVM outlives the test process: each has a watchdog (`sh`) that kills it when the pipe
//!   from this process closes, which happens however the process ends. A private [`Kafka`]
//!   kills its JVMs on drop, and prints where its logs are when the test failed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The SASL user created at format time (SCRAM) and in the PLAIN JAAS config.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "alice-secret";
/// The principal of unsecured OAUTHBEARER tokens the brokers accept.
pub const OAUTH_PRINCIPAL: &str = "admin";

/// Password of every PKCS#12 store [`Certs`] writes.
pub const STORE_PASSWORD: &str = "herald-store";
/// The key password of [`Certs::client_jks`], other than its store's.
pub const KEY_PASSWORD: &str = "herald-key";

/// A listener every node has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Plaintext,
    /// TLS; a client certificate is requested, not required.
    Ssl,
    /// TLS that requires a client certificate signed by the test CA.
    Mtls,
    SaslPlaintext,
    SaslSsl,
}

impl Listener {
    pub const ALL: [Listener; 5] = [
        Listener::Plaintext,
        Listener::Ssl,
        Listener::Mtls,
        Listener::SaslPlaintext,
        Listener::SaslSsl,
    ];

    fn name(self) -> &'static str {
        match self {
            Listener::Plaintext => "PLAINTEXT",
            Listener::Ssl => "SSL",
            Listener::Mtls => "MTLS",
            Listener::SaslPlaintext => "SASL_PLAINTEXT",
            Listener::SaslSsl => "SASL_SSL",
        }
    }

    /// The `security.protocol` a client uses on it.
    pub fn security_protocol(self) -> &'static str {
        match self {
            Listener::Plaintext => "PLAINTEXT",
            Listener::Ssl | Listener::Mtls => "SSL",
            Listener::SaslPlaintext => "SASL_PLAINTEXT",
            Listener::SaslSsl => "SASL_SSL",
        }
    }
}

/// The loopback ports of one node.
#[derive(Debug, Clone, Copy)]
struct Ports {
    listeners: [u16; 5],
    controller: u16,
}

impl Ports {
    /// The ports of `nodes` nodes. All are bound at once, so the OS hands out different
    /// ports to every listener of every node, then released for the JVMs. (Picked node by
    /// node, a later node could get a port an earlier one had just released: once node 3's
    /// broker listener took node 2's PLAINTEXT port, node 2 exited with "Address already in
    /// use", and the cluster never registered every broker.)
    ///
    /// They come from their own band below the kernel's ephemeral range ([`PortBand`]): a
    /// node stopped by a test keeps its ports. Once a listener of a test running alongside
    /// took a stopped node's controller port: the other nodes' controllers connected to it,
    /// read its answer's first bytes as a length, and died of OutOfMemoryError.
    fn pick(nodes: usize) -> Vec<Ports> {
        let held = PortBand::Kafka.bind(nodes * 6, |port| {
            TcpListener::bind(("127.0.0.1", port)).ok()
        });
        let p: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        p.chunks(6)
            .map(|p| Ports {
                listeners: [p[0], p[1], p[2], p[3], p[4]],
                controller: p[5],
            })
            .collect()
    }

    fn of(&self, l: Listener) -> u16 {
        self.listeners[Listener::ALL.iter().position(|x| *x == l).unwrap()]
    }
}

/// Ports for the listeners the tests bind themselves, kept out of the kernel's ephemeral
/// range (`ip_local_port_range`). A port freed there is soon handed to whatever binds port
/// 0 next, or to a client socket: librdkafka's mock cluster binds there and, when a test
/// brings one of its brokers back up, must bind that broker's old port again (it aborts
/// the whole test process when it cannot), and a stopped Kafka node keeps its ports for
/// its restart. So Kafka nodes take ports from one band below the range, fake brokers and
/// Tansu from another, and only the mock cluster and clients from the range itself.
#[derive(Debug, Clone, Copy)]
pub enum PortBand {
    /// The Kafka nodes': the 16,384 ports below the ephemeral range.
    Kafka,
    /// Every other listener the tests bind (fake brokers, Tansu, the token endpoint, dead
    /// addresses): from 10,000 up to the Kafka band.
    Listeners,
}

impl PortBand {
    /// `[from, to)`.
    fn range(self) -> (u16, u16) {
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(32768);
        let kafka = low.saturating_sub(16_384).max(12_000);
        let range = match self {
            PortBand::Kafka => (kafka, low),
            PortBand::Listeners => (10_000, kafka),
        };
        assert!(
            range.1 > range.0 + 1_000,
            "no room below the ephemeral range (it starts at {low})"
        );
        range
    }

    /// `n` things bound by `bind` on ports of this band, trying ports from a place that
    /// differs from call to call and from process to process until `n` succeed.
    pub fn bind<T>(self, n: usize, mut bind: impl FnMut(u16) -> Option<T>) -> Vec<T> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let (from, to) = self.range();
        let span = u32::from(to - from);
        let seed = std::process::id().wrapping_mul(7919)
            ^ CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(104_729)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        let start = seed % span;
        let bound: Vec<T> = (0..span)
            .map(|i| from + ((start + i) % span) as u16)
            .filter_map(&mut bind)
            .take(n)
            .collect();
        assert_eq!(bound.len(), n, "free ports between {from} and {to}");
        bound
    }
}

/// Test certificates, made once per test process with `openssl`.
#[derive(Debug)]
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// The CA that signed the brokers' and the client's certificates (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// A CA that signed nothing here: trusting only it must fail the handshake.
    pub fn untrusted_ca(&self) -> PathBuf {
        self.dir.join("untrusted-ca.pem")
    }
    /// The brokers' certificate and key (PKCS#12, [`STORE_PASSWORD`]); SANs 127.0.0.1 and
    /// localhost.
    pub fn server_p12(&self) -> PathBuf {
        self.dir.join("server.p12")
    }
    /// As [`server_p12`](Self::server_p12), signed by the test CA, but valid only on
    /// 2020-01-01.
    pub fn expired_server_p12(&self) -> PathBuf {
        self.dir.join("expired-server.p12")
    }
    /// The client's certificate (PEM).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }
    /// The client's private key (PEM, PKCS#8, unencrypted).
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
    /// The client's certificate and key (PKCS#12, [`STORE_PASSWORD`]).
    pub fn client_p12(&self) -> PathBuf {
        self.dir.join("client.p12")
    }
    /// The CA as a Java truststore: PKCS#12 made by `keytool -importcert` (a trusted
    /// certificate entry), [`STORE_PASSWORD`].
    pub fn truststore_p12(&self) -> PathBuf {
        self.dir.join("truststore.p12")
    }
    /// The CA as a JKS truststore (Kafka's default type), made by `keytool -importcert`,
    /// [`STORE_PASSWORD`].
    pub fn truststore_jks(&self) -> PathBuf {
        self.dir.join("truststore.jks")
    }
    /// The client's RSA key and chain as a JKS keystore, converted by keytool from
    /// [`client_p12`](Self::client_p12): store password [`STORE_PASSWORD`], key password
    /// [`KEY_PASSWORD`].
    pub fn client_jks(&self) -> PathBuf {
        self.dir.join("client.jks")
    }
    /// A client EC (P-256) key made by keytool, as the JDK encodes it (no public key in
    /// its PKCS#8), its certificate signed by the CA: a JKS keystore whose key password is
    /// the store's, [`STORE_PASSWORD`].
    pub fn client_ec_jks(&self) -> PathBuf {
        self.dir.join("client-ec.jks")
    }
}

/// The test certificates of this process.
pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = scratch_dir("certs");
        let sh = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| panic!("run openssl (scripts/test.sh installs it): {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // `{name}.csr` signed by the test CA with the extensions of `{ext}.ext`.
        let sign = |name: &str, ext: &str| {
            sh(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "3",
                "-extfile",
                &format!("{ext}.ext"),
                "-out",
                &format!("{name}.pem"),
            ]);
        };
        let keytool = |args: &[&str]| {
            let out = Command::new("keytool")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| {
                    panic!("run keytool (part of the JDK the Kafka tests need): {e}")
                });
            assert!(
                out.status.success(),
                "keytool {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ca = |name: &str, cn: &str| {
            sh(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "3",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ]);
        };
        ca("ca", "herald-test-ca");
        ca("untrusted-ca", "herald-untrusted-ca");
        // `expired`: signed by `openssl ca` with a validity that ended in 2020 (`x509 -req`
        // counts days from now only).
        let leaf = |name: &str, cn: &str, ext: &str, expired: bool| {
            std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
            sh(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            if expired {
                std::fs::write(dir.join("index.txt"), "").unwrap();
                std::fs::write(dir.join("serial.txt"), "1000\n").unwrap();
                std::fs::write(
                    dir.join("ca.cnf"),
                    "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\n\
                     new_certs_dir = .\nserial = serial.txt\ndefault_md = sha256\n\
                     policy = any\n[any]\ncommonName = supplied\n",
                )
                .unwrap();
                sh(&[
                    "ca",
                    "-batch",
                    "-notext",
                    "-config",
                    "ca.cnf",
                    "-cert",
                    "ca.pem",
                    "-keyfile",
                    "ca.key",
                    "-startdate",
                    "20200101000000Z",
                    "-enddate",
                    "20200102000000Z",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-in",
                    &format!("{name}.csr"),
                    "-out",
                    &format!("{name}.pem"),
                ]);
            } else {
                sign(name, name);
            }
            sh(&[
                "pkcs12",
                "-export",
                "-in",
                &format!("{name}.pem"),
                "-inkey",
                &format!("{name}.key"),
                "-certfile",
                "ca.pem",
                "-name",
                name,
                "-passout",
                &format!("pass:{STORE_PASSWORD}"),
                "-out",
                &format!("{name}.p12"),
            ]);
        };
        let server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
        leaf("server", "localhost", server_ext, false);
        leaf("expired-server", "localhost", server_ext, true);
        leaf(
            "client",
            "herald-client",
            "extendedKeyUsage=clientAuth\n",
            false,
        );
        // A keystore's type, file and password, as keytool takes them.
        let store = |kind: &'static str, file: &'static str| {
            [
                "-storetype",
                kind,
                "-keystore",
                file,
                "-storepass",
                STORE_PASSWORD,
            ]
        };
        let import = |alias: &str, file: &str, into: &[&str]| {
            let cert = ["-importcert", "-noprompt", "-alias", alias, "-file", file];
            keytool(&[&cert[..], into].concat());
        };
        // What a Java user's truststore is: keytool marks the entry trusted, which openssl's
        // PKCS#12 export does not. Then the same in Kafka's default type, JKS.
        import(
            "herald-test-ca",
            "ca.pem",
            &store("PKCS12", "truststore.p12"),
        );
        import("herald-test-ca", "ca.pem", &store("JKS", "truststore.jks"));
        keytool(&[
            "-importkeystore",
            "-noprompt",
            "-srckeystore",
            "client.p12",
            "-srcstoretype",
            "PKCS12",
            "-srcstorepass",
            STORE_PASSWORD,
            "-srcalias",
            "client",
            "-destkeystore",
            "client.jks",
            "-deststoretype",
            "JKS",
            "-deststorepass",
            STORE_PASSWORD,
            "-destkeypass",
            KEY_PASSWORD,
        ]);
        // keytool's own EC key, signed by the CA, its chain installed from the reply.
        let ec = store("JKS", "client-ec.jks");
        let genkey = [
            "-genkeypair",
            "-alias",
            "client-ec",
            "-keyalg",
            "EC",
            "-groupname",
            "secp256r1",
            "-dname",
            "CN=herald-client-ec",
        ];
        keytool(&[&genkey[..], &ec].concat());
        let certreq = ["-certreq", "-alias", "client-ec", "-file", "client-ec.csr"];
        keytool(&[&certreq[..], &ec].concat());
        sign("client-ec", "client");
        import("herald-test-ca", "ca.pem", &ec);
        import("client-ec", "client-ec.pem", &ec);
        Certs { dir }
    })
}

/// Where the Kafka jars are: `HERALD_KAFKA_LIBS`, or what `scripts/kafka/install.sh` resolves.
pub fn libs() -> &'static Path {
    static LIBS: OnceLock<PathBuf> = OnceLock::new();
    LIBS.get_or_init(|| {
        if let Ok(p) = std::env::var("HERALD_KAFKA_LIBS") {
            return PathBuf::from(p);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka/install.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: Apache Kafka could not be installed (needs java and mvn)",
            script.display()
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// A fresh folder under the target directory's scratch space (scripts/test.sh empties it).
/// Cargo names that space for integration tests only; an example that includes this file
/// (the benchmark) gets the system's temporary folder instead.
fn scratch_dir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let base = option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!(
        "herald-kafka-{}-{what}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running JVM and the watchdog that kills it when this process goes away.
pub struct Jvm {
    child: Child,
    /// Closing it (on drop, or by this process ending) makes the watchdog kill the JVM.
    _watchdog_pipe: ChildStdin,
    watchdog: Child,
}

impl Jvm {
    /// Starts `cmd` (a `java` command line) with stdout and stderr to `log`, and its watchdog.
    pub fn spawn(mut cmd: Command, log: &Path) -> Jvm {
        let out = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start java (scripts/test.sh needs Java 17): {e}"));
        let mut watchdog = Command::new("sh")
            .args([
                "-c",
                &format!("cat >/dev/null; kill -9 {} 2>/dev/null", child.id()),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the JVM's watchdog");
        let pipe = watchdog.stdin.take().unwrap();
        Jvm {
            child,
            _watchdog_pipe: pipe,
            watchdog,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {}", self.pid());
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the JVM to exit; its exit status.
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait()
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipe closes after this body; the watchdog then finds nothing left to kill.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// One node of a cluster.
struct Node {
    id: i32,
    ports: Ports,
    dir: PathBuf,
    jvm: Option<Jvm>,
    frozen: bool,
}

impl Node {
    fn config(&self) -> PathBuf {
        self.dir.join("server.properties")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// A broker's JVM.
    fn java(&self, main: &str) -> Command {
        self.jvm_with(&["-Xms128m", "-Xmx512m", "-XX:+UseG1GC"], main)
    }

    /// A short-lived admin tool's JVM: only the quick compiler and the serial collector, which
    /// cut a tool's CPU time from about 3.3 s to 2.1 s on the 2-core machine. With both cores
    /// busy (three brokers, two producers streaming) a reassignment took up to 18 s.
    fn tool(&self, main: &str) -> Command {
        self.jvm_with(
            &["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"],
            main,
        )
    }

    fn jvm_with(&self, flags: &[&str], main: &str) -> Command {
        let mut cmd = Command::new("java");
        cmd.args(flags)
            .arg("-Djava.awt.headless=true")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("log4j2.properties").display()
            ))
            // Marks the process as ours, so scripts/test.sh can find strays.
            .arg("-Dherald.kafka.test=1")
            .arg("-cp")
            .arg(format!("{}/*", libs().display()))
            .arg(main);
        cmd
    }

    fn launch(&mut self) {
        assert!(self.jvm.is_none(), "node {} is running", self.id);
        let mut cmd = self.java("kafka.Kafka");
        cmd.arg(self.config());
        self.jvm = Some(Jvm::spawn(cmd, &self.dir.join("stdout.log")));
        self.frozen = false;
    }

    fn listens(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.ports.of(Listener::Plaintext))).is_ok()
    }
}

/// How to start a [`Kafka`].
#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: usize,
    /// Broker settings added to (or replacing) the defaults, as `key=value`.
    pub props: Vec<(String, String)>,
}

impl Options {
    pub fn single() -> Options {
        Options {
            nodes: 1,
            props: Vec::new(),
        }
    }

    pub fn cluster(nodes: usize) -> Options {
        Options {
            nodes,
            props: Vec::new(),
        }
    }

    pub fn prop(mut self, key: &str, value: &str) -> Options {
        self.props.push((key.into(), value.into()));
        self
    }
}

/// One partition as the cluster's metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub id: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A running Apache Kafka cluster of one or more nodes.
pub struct Kafka {
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kafka({})", self.dir.display())
    }
}

impl Kafka {
    /// Formats storage and starts every node; waits until all are registered. Blocks the
    /// calling thread (call it before starting producers).
    pub fn start(opts: Options) -> Kafka {
        let started = Instant::now();
        let certs = certs();
        let dir = scratch_dir(&format!("{}n", opts.nodes));
        let ports = Ports::pick(opts.nodes);
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{}", i + 1, p.controller))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let node_dir = dir.join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&node_dir).unwrap();
            let node = Node {
                id: i as i32 + 1,
                ports: *p,
                dir: node_dir,
                jvm: None,
                frozen: false,
            };
            let props = broker_properties(&node, &voters, opts.nodes, certs, &opts.props);
            std::fs::write(node.config(), props).unwrap();
            std::fs::write(
                node.dir.join("log4j2.properties"),
                log4j2_properties(&node.log()),
            )
            .unwrap();
            nodes.push(node);
        }
        let cluster_id = cluster_id();
        // Format every node's storage (in parallel: each is a JVM start).
        std::thread::scope(|s| {
            for node in &nodes {
                let cluster_id = &cluster_id;
                s.spawn(move || {
                    let mut cmd = node.tool("kafka.tools.StorageTool");
                    cmd.args(["format", "--ignore-formatted", "-c"])
                        .arg(node.config())
                        .arg(format!("--cluster-id={cluster_id}"));
                    for m in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                        cmd.arg("--add-scram")
                            .arg(format!("{m}=[name={USER},password={PASSWORD}]"));
                    }
                    let out = cmd.output().expect("run kafka-storage format");
                    assert!(
                        out.status.success(),
                        "kafka-storage format node {}: {}{}",
                        node.id,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                });
            }
        });
        for node in &mut nodes {
            node.launch();
        }
        let kafka = Kafka { nodes, dir };
        // Generous: three JVMs starting at once on two loaded cores take minutes.
        let deadline = Instant::now() + Duration::from_secs(240);
        for node in &kafka.nodes {
            while !node.listens() {
                kafka.check_alive(node, deadline);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let ids: Vec<i32> = kafka.nodes.iter().map(|n| n.id).collect();
        wait_until(deadline, "every broker registered", || {
            // A node that exited (a port taken, say) fails the start now, naming its log.
            for node in &kafka.nodes {
                kafka.check_alive(node, deadline);
            }
            brokers(&kafka.bootstrap())
                .map(|b| b == ids)
                .unwrap_or(false)
        });
        println!(
            "Apache Kafka: {} node(s) started in {:.1} s; logs under {}",
            kafka.nodes.len(),
            started.elapsed().as_secs_f64(),
            kafka.dir.display()
        );
        kafka
    }

    fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn check_alive(&self, node: &Node, deadline: Instant) {
        assert!(
            Instant::now() < deadline,
            "Kafka node {} did not come up in time; log: {}",
            node.id,
            node.log().display()
        );
        assert!(
            node.jvm.as_ref().is_some_and(|j| pid_alive(j.pid())),
            "Kafka node {} exited at start; log: {} (and stdout.log beside it)",
            node.id,
            node.log().display()
        );
    }

    /// The folder of the nodes' data and logs (kept after drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node ids.
    pub fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// `host:port,...` of every node's PLAINTEXT listener.
    pub fn bootstrap(&self) -> String {
        self.bootstrap_on(Listener::Plaintext)
    }

    /// `host:port,...` of every node's listener `l`.
    pub fn bootstrap_on(&self, l: Listener) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.ports.of(l)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Where each node writes its log.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(Node::log).collect()
    }

    /// An admin client of the cluster.
    fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client")
    }

    /// Creates `topic`; waits until every partition has a leader that serves it. (The
    /// cluster's metadata names a leader before that broker has created the partition's log;
    /// a write in between is refused and retried, which without idempotence may reorder.)
    pub async fn create_topic(&self, topic: &str, partitions: i32, replication: i32) {
        self.create_topic_with(topic, partitions, replication, &[])
            .await
    }

    /// [`create_topic`](Self::create_topic) with topic configs, e.g.
    /// `("max.message.bytes", "4096")`.
    pub async fn create_topic_with(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
        config: &[(&str, &str)],
    ) {
        let admin = self.admin();
        let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
        for (k, v) in config {
            t = t.set(k, v);
        }
        let res = admin
            .create_topics([&t], &AdminOptions::new())
            .await
            .expect("CreateTopics");
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
        self.wait_served(topic, partitions).await;
    }

    /// Waits until `topic` has `partitions` partitions, each with a leader, all its replicas
    /// in sync, and served by that leader. (The cluster's metadata names a leader before that
    /// broker has created the partition's log; ListOffsets goes to each leader, which answers
    /// once the partition is its own.)
    async fn wait_served(&self, topic: &str, partitions: i32) {
        let (bootstrap, topic) = (self.bootstrap(), topic.to_string());
        blocking(move || {
            wait_until(
                Instant::now() + Duration::from_secs(30),
                "topic leaders",
                || {
                    partitions_of(&bootstrap, &topic).is_ok_and(|ps| {
                        ps.len() == partitions as usize
                            && ps
                                .iter()
                                .all(|p| p.leader >= 0 && p.isr.len() == p.replicas.len())
                    })
                },
            );
            let client = metadata_client(&bootstrap);
            wait_until(
                Instant::now() + Duration::from_secs(30),
                "partitions served by their leaders",
                || {
                    (0..partitions).all(|p| {
                        client
                            .fetch_watermarks(&topic, p, Duration::from_secs(2))
                            .is_ok()
                    })
                },
            );
        })
        .await;
    }

    /// Raises `topic` to `total` partitions; returns once every partition has a leader that
    /// serves it.
    pub async fn add_partitions(&self, topic: &str, total: i32) {
        let admin = self.admin();
        let res = admin
            .create_partitions(
                [&NewPartitions::new(topic, total as usize)],
                &AdminOptions::new(),
            )
            .await
            .expect("CreatePartitions");
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("add partitions to {t}: {e}"));
        }
        self.wait_served(topic, total).await;
    }

    /// Deletes `topic`; returns once the controller has accepted the deletion (a client
    /// naming the topic in a metadata request may have the broker create it again at once).
    pub async fn delete_topic(&self, topic: &str) {
        let admin = self.admin();
        let res = admin
            .delete_topics(&[topic], &AdminOptions::new())
            .await
            .expect("DeleteTopics");
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("delete topic {t}: {e}"));
        }
    }

    /// The topics the cluster lists now (asked without naming any, so none is created).
    pub async fn topics(&self) -> Vec<String> {
        let bootstrap = self.bootstrap();
        blocking(move || topic_names(&bootstrap).expect("metadata")).await
    }

    /// The partitions of `topic` as the cluster describes them now.
    pub async fn partitions(&self, topic: &str) -> Vec<PartitionState> {
        let (bootstrap, topic) = (self.running_bootstrap(), topic.to_string());
        blocking(move || partitions_of(&bootstrap, &topic).expect("metadata")).await
    }

    /// The leader of `topic`-`partition`.
    pub async fn leader(&self, topic: &str, partition: i32) -> i32 {
        self.partitions(topic).await[partition as usize].leader
    }

    /// Waits until every partition of `topic` has its full replica set in sync.
    pub async fn wait_in_sync(&self, topic: &str, within: Duration) {
        let (bootstrap, topic) = (self.running_bootstrap(), topic.to_string());
        blocking(move || {
            wait_until(Instant::now() + within, "replicas in sync", || {
                partitions_of(&bootstrap, &topic).is_ok_and(|ps| {
                    ps.iter().all(|p| {
                        let mut isr = p.isr.clone();
                        let mut replicas = p.replicas.clone();
                        isr.sort_unstable();
                        replicas.sort_unstable();
                        p.leader >= 0 && isr == replicas
                    })
                })
            })
        })
        .await;
    }

    /// Bootstrap of the nodes that are running and not frozen.
    fn running_bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.jvm.is_some() && !n.frozen)
            .map(|n| format!("127.0.0.1:{}", n.ports.of(Listener::Plaintext)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops node `id` cleanly (SIGTERM: controlled shutdown moves its leaderships first).
    pub async fn stop(&mut self, id: i32) {
        let node = self.node_mut(id);
        let mut jvm = node.jvm.take().expect("node running");
        if node.frozen {
            jvm.signal("-CONT");
            node.frozen = false;
        }
        jvm.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !jvm.exited() {
            if Instant::now() > deadline {
                println!("Kafka node {id} did not stop within 60 s of SIGTERM; killing it");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(jvm);
    }

    /// Kills node `id` (SIGKILL): no goodbye, its sockets vanish.
    pub fn kill(&mut self, id: i32) {
        let node = self.node_mut(id);
        drop(node.jvm.take().expect("node running"));
        node.frozen = false;
    }

    /// Freezes node `id` (SIGSTOP): requests it received are neither answered nor refused.
    pub fn freeze(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.jvm.as_ref().expect("node running").signal("-STOP");
        node.frozen = true;
    }

    /// Thaws a frozen node (SIGCONT).
    pub fn thaw(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.jvm.as_ref().expect("node running").signal("-CONT");
        node.frozen = false;
    }

    /// Starts a stopped or killed node again on its ports and data; waits until it is
    /// registered with the cluster.
    pub async fn restart(&mut self, id: i32) {
        self.restart_all(&[id]).await;
    }

    /// Starts the stopped or killed nodes `ids` again, all before waiting for any: a node
    /// listens only once a quorum of the controllers is up, so with two of three down, one
    /// started and waited for alone never came up.
    async fn restart_all(&mut self, ids: &[i32]) {
        let started = Instant::now();
        for &id in ids {
            self.node_mut(id).launch();
        }
        let deadline = Instant::now() + Duration::from_secs(240);
        for &id in ids {
            while !self.node(id).listens() {
                for &other in ids {
                    self.check_alive(self.node(other), deadline);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let (bootstrap, all) = (self.bootstrap(), self.ids());
        blocking(move || {
            wait_until(deadline, "the node registered again", || {
                brokers(&bootstrap).is_ok_and(|b| b == all)
            })
        })
        .await;
        println!(
            "Kafka node(s) {ids:?} back in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    /// Makes every node run again (a test that failed may have left one stopped or frozen).
    pub async fn heal(&mut self) {
        let mut dead_ids = Vec::new();
        for id in self.ids() {
            let node = self.node_mut(id);
            if node.frozen {
                node.jvm.as_ref().unwrap().signal("-CONT");
                node.frozen = false;
            }
            let dead = node.jvm.as_mut().is_none_or(Jvm::exited);
            if dead {
                node.jvm = None;
                dead_ids.push(id);
            }
        }
        if !dead_ids.is_empty() {
            self.restart_all(&dead_ids).await;
        }
    }

    /// Moves the leadership of `topic`-`partition` to node `to`: reorders the replica list so
    /// `to` is preferred (a reassignment that moves no data), then runs a preferred-leader
    /// election, both with Kafka's own admin tools. Waits until the metadata shows it.
    pub async fn move_leader(&self, topic: &str, partition: i32, to: i32) {
        let state = self.partitions(topic).await[partition as usize].clone();
        assert!(state.replicas.contains(&to), "{to} holds no replica");
        let mut replicas = vec![to];
        replicas.extend(state.replicas.iter().copied().filter(|r| *r != to));
        let plan = format!(
            r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":{partition},"replicas":{replicas:?}}}]}}"#
        );
        let file = self.dir.join(format!("reassign-{topic}-{partition}.json"));
        std::fs::write(&file, plan).unwrap();
        let node = self.node(to);
        let bootstrap = self.running_bootstrap();
        let mut reassign = node.tool("org.apache.kafka.tools.reassign.ReassignPartitionsCommand");
        reassign
            .args(["--bootstrap-server", &bootstrap, "--execute"])
            .arg("--reassignment-json-file")
            .arg(&file);
        let mut elect = node.tool("org.apache.kafka.tools.LeaderElectionCommand");
        elect.args([
            "--bootstrap-server",
            &bootstrap,
            "--election-type",
            "PREFERRED",
            "--topic",
            topic,
            "--partition",
            &partition.to_string(),
        ]);
        let topic = topic.to_string();
        blocking(move || {
            for (what, mut cmd) in [("reassignment", reassign), ("leader election", elect)] {
                let out = cmd.output().expect("run a Kafka admin tool");
                assert!(
                    out.status.success(),
                    "{what}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            wait_until(
                Instant::now() + Duration::from_secs(30),
                "the new leader",
                || {
                    partitions_of(&bootstrap, &topic)
                        .is_ok_and(|ps| ps[partition as usize].leader == to)
                },
            )
        })
        .await;
    }

    /// The producers (ids) the leader of `topic`-`partition` keeps state for, with the tool's
    /// table for messages (Kafka's own `kafka-transactions describe-producers`).
    pub async fn active_producers(&self, topic: &str, partition: i32) -> (Vec<i64>, String) {
        let mut cmd = self.nodes[0].tool("org.apache.kafka.tools.TransactionsCommand");
        cmd.args([
            "--bootstrap-server",
            &self.running_bootstrap(),
            "describe-producers",
            "--topic",
            topic,
            "--partition",
            &partition.to_string(),
        ]);
        let out = blocking(move || cmd.output().expect("run kafka-transactions")).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && text.contains("ProducerId"),
            "describe-producers: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A header line, then one line per producer, its id first.
        let ids = text
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        (ids, text)
    }

    /// Sets the `producer_byte_rate` quota of client id `client_id` (Kafka's ConfigCommand, a
    /// JVM). The brokers apply it from the cluster's metadata shortly after.
    pub async fn set_producer_quota(&self, client_id: &str, bytes_per_s: u64) {
        let mut cmd = self.nodes[0].tool("kafka.admin.ConfigCommand");
        cmd.args([
            "--bootstrap-server",
            &self.running_bootstrap(),
            "--alter",
            "--add-config",
            &format!("producer_byte_rate={bytes_per_s}"),
            "--entity-type",
            "clients",
            "--entity-name",
            client_id,
        ]);
        let out = blocking(move || cmd.output().expect("run kafka-configs")).await;
        assert!(
            out.status.success(),
            "kafka-configs: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// librdkafka client settings for listener `l` (what the read-back consumer or a
    /// reference producer needs to connect there), SASL with `mechanism` where it applies.
    pub fn rdkafka_config(&self, l: Listener, mechanism: &str) -> ClientConfig {
        let certs = certs();
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap_on(l))
            .set("security.protocol", l.security_protocol());
        if matches!(l, Listener::Ssl | Listener::Mtls | Listener::SaslSsl) {
            c.set("ssl.ca.location", certs.ca().to_str().unwrap());
        }
        if l == Listener::Mtls {
            c.set(
                "ssl.certificate.location",
                certs.client_cert().to_str().unwrap(),
            )
            .set("ssl.key.location", certs.client_key().to_str().unwrap());
        }
        if matches!(l, Listener::SaslPlaintext | Listener::SaslSsl) {
            c.set("sasl.mechanisms", mechanism);
            if mechanism == "OAUTHBEARER" {
                c.set("enable.sasl.oauthbearer.unsecure.jwt", "true").set(
                    "sasl.oauthbearer.config",
                    format!("principal={OAUTH_PRINCIPAL}"),
                );
            } else {
                c.set("sasl.username", USER).set("sasl.password", PASSWORD);
            }
        }
        c
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Apache Kafka logs of the failed test:");
            for l in self.logs() {
                eprintln!("  {}", l.display());
            }
        }
        // The JVMs die with their nodes; data and logs stay until scripts/test.sh's next run.
        self.nodes.clear();
    }
}

fn broker_properties(
    node: &Node,
    voters: &str,
    nodes: usize,
    certs: &Certs,
    extra: &[(String, String)],
) -> String {
    let listeners: Vec<String> = Listener::ALL
        .iter()
        .map(|l| format!("{}://127.0.0.1:{}", l.name(), node.ports.of(*l)))
        .collect();
    let rf = nodes.min(3).to_string();
    let min_isr = if nodes >= 3 { "2" } else { "1" };
    let data = node.dir.join("data");
    let mut props: Vec<(String, String)> = vec![
        ("process.roles", "broker,controller".to_string()),
        ("node.id", node.id.to_string()),
        ("controller.quorum.voters", voters.to_string()),
        (
            "listeners",
            format!(
                "{},CONTROLLER://127.0.0.1:{}",
                listeners.join(","),
                node.ports.controller
            ),
        ),
        ("advertised.listeners", listeners.join(",")),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,\
             SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
                .to_string(),
        ),
        ("controller.listener.names", "CONTROLLER".to_string()),
        ("inter.broker.listener.name", "PLAINTEXT".to_string()),
        ("log.dirs", data.display().to_string()),
        ("num.partitions", "1".to_string()),
        // The tests write records stamped in 2023 so that timestamps can be checked exactly.
        // Time retention (7 days) would delete them at the broker's retention check, 30 s
        // after start and every 5 min, and read-backs would come up short depending on when
        // it ran: keep everything for the broker's life.
        ("log.retention.ms", "-1".to_string()),
        ("default.replication.factor", rf.clone()),
        ("min.insync.replicas", min_isr.to_string()),
        ("offsets.topic.replication.factor", rf.clone()),
        ("offsets.topic.num.partitions", "5".to_string()),
        ("transaction.state.log.replication.factor", rf),
        ("transaction.state.log.min.isr", min_isr.to_string()),
        ("transaction.state.log.num.partitions", "5".to_string()),
        ("group.initial.rebalance.delay.ms", "0".to_string()),
        ("num.network.threads", "2".to_string()),
        ("num.io.threads", "4".to_string()),
        // A killed broker is fenced, and its partitions led elsewhere, after 4 s rather than 9.
        ("broker.session.timeout.ms", "4000".to_string()),
        // A loaded machine can take longer than the default minute to bring a quorum up.
        (
            "initial.broker.registration.timeout.ms",
            "240000".to_string(),
        ),
        ("broker.heartbeat.interval.ms", "500".to_string()),
        // TLS: the brokers' certificate, and the test CA for client certificates.
        ("ssl.keystore.type", "PKCS12".to_string()),
        (
            "ssl.keystore.location",
            certs.server_p12().display().to_string(),
        ),
        ("ssl.keystore.password", STORE_PASSWORD.to_string()),
        ("ssl.key.password", STORE_PASSWORD.to_string()),
        ("ssl.truststore.type", "PEM".to_string()),
        ("ssl.truststore.location", certs.ca().display().to_string()),
        ("listener.name.ssl.ssl.client.auth", "requested".to_string()),
        ("listener.name.mtls.ssl.client.auth", "required".to_string()),
        (
            "sasl.enabled.mechanisms",
            "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for l in ["sasl_plaintext", "sasl_ssl"] {
        props.push((
            format!("listener.name.{l}.plain.sasl.jaas.config"),
            format!(
                "org.apache.kafka.common.security.plain.PlainLoginModule required \
                 user_{USER}=\"{PASSWORD}\";"
            ),
        ));
        for m in ["scram-sha-256", "scram-sha-512"] {
            props.push((
                format!("listener.name.{l}.{m}.sasl.jaas.config"),
                "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
            ));
        }
        // No server callback handler: Kafka validates unsecured (alg none) tokens.
        props.push((
            format!("listener.name.{l}.oauthbearer.sasl.jaas.config"),
            format!(
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
                 unsecuredLoginStringClaim_sub=\"{OAUTH_PRINCIPAL}\";"
            ),
        ));
    }
    if nodes > 1 {
        // A rack per node, as zones of a real deployment, for rack-aware partitioning
        // (KIP-1123); with replication factor 3 on three racks, placement is unchanged.
        props.push(("broker.rack".to_string(), format!("rack-{}", node.id)));
    }
    for (k, v) in extra {
        props.retain(|(pk, _)| pk != k);
        props.push((k.clone(), v.clone()));
    }
    props
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect::<String>()
}

fn log4j2_properties(log: &Path) -> String {
    format!(
        "status = warn\n\
         appender.file.type = File\n\
         appender.file.name = file\n\
         appender.file.fileName = {}\n\
         appender.file.layout.type = PatternLayout\n\
         appender.file.layout.pattern = [%d] %p %m (%c)%n\n\
         rootLogger.level = info\n\
         rootLogger.appenderRef.file.ref = file\n\
         logger.kafka.name = org.apache.kafka\n\
         logger.kafka.level = info\n",
        log.display()
    )
}

/// A KRaft cluster id: 16 random bytes, base64url without padding, drawn again when it
/// starts with `-` (as Kafka's own `Uuid.randomUuid` does), which a command line would read
/// as an option.
fn cluster_id() -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    loop {
        let bytes: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = String::new();
        for b in bytes {
            bits = (bits << 8) | u32::from(b);
            n += 8;
            while n >= 6 {
                n -= 6;
                out.push(A[((bits >> n) & 63) as usize] as char);
            }
        }
        if n > 0 {
            out.push(A[((bits << (6 - n)) & 63) as usize] as char);
        }
        if !out.starts_with('-') {
            return out;
        }
    }
}

fn metadata_client(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("topic.metadata.refresh.interval.ms", "-1")
        .set("log_level", "3")
        .create()
        .expect("metadata client")
}

/// Every topic the cluster lists.
fn topic_names(bootstrap: &str) -> Result<Vec<String>, rdkafka::error::KafkaError> {
    let md = metadata_client(bootstrap).fetch_metadata(None, Duration::from_secs(5))?;
    Ok(md.topics().iter().map(|t| t.name().to_string()).collect())
}

/// The ids of the brokers the cluster has registered (fenced ones are absent), sorted.
fn brokers(bootstrap: &str) -> Result<Vec<i32>, rdkafka::error::KafkaError> {
    let md = metadata_client(bootstrap).fetch_metadata(None, Duration::from_secs(2))?;
    let mut ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The partitions of `topic` as librdkafka's metadata describes them, from any cluster
/// (Apache Kafka's or the mock's).
pub fn partitions_of(
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<PartitionState>, rdkafka::error::KafkaError> {
    let md = metadata_client(bootstrap).fetch_metadata(Some(topic), Duration::from_secs(2))?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or(
        rdkafka::error::KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopic),
    )?;
    if let Some(e) = t.error() {
        return Err(rdkafka::error::KafkaError::MetadataFetch(e.into()));
    }
    let mut ps: Vec<PartitionState> = t
        .partitions()
        .iter()
        .map(|p| PartitionState {
            id: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
        })
        .collect();
    ps.sort_by_key(|p| p.id);
    Ok(ps)
}

/// Whether process `pid` runs (exists and is not a zombie), read from /proc.
fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn wait_until(deadline: Instant, what: &str, mut ok: impl FnMut() -> bool) {
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` on a blocking thread so the test's actors keep running meanwhile.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking helper")
}

/// The single-node broker tests share (each with topics of its own). Started on first use;
/// its JVM dies with the test process.
pub fn shared() -> &'static Kafka {
    static SHARED: OnceLock<Kafka> = OnceLock::new();
    SHARED.get_or_init(|| Kafka::start(Options::single()))
}

/// The three-node cluster, for one test at a time: it may stop, kill, freeze and restart
/// nodes; whoever takes it next finds every node running again.
pub async fn cluster() -> ClusterGuard {
    static CLUSTER: OnceLock<tokio::sync::Mutex<Kafka>> = OnceLock::new();
    let lock = CLUSTER.get_or_init(|| tokio::sync::Mutex::new(Kafka::start(Options::cluster(3))));
    let mut guard = lock.lock().await;
    guard.heal().await;
    ClusterGuard(guard)
}

/// Exclusive use of the three-node cluster; prints where its logs are if the test fails.
pub struct ClusterGuard(tokio::sync::MutexGuard<'static, Kafka>);

impl std::ops::Deref for ClusterGuard {
    type Target = Kafka;
    fn deref(&self) -> &Kafka {
        &self.0
    }
}

impl std::ops::DerefMut for ClusterGuard {
    fn deref_mut(&mut self) -> &mut Kafka {
        &mut self.0
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Apache Kafka (three nodes) logs of the failed test:");
            for l in self.0.logs() {
                eprintln!("  {}", l.display());
            }
        }
    }
}

/// Prints the shared broker's log path if the test holding it fails.
pub struct SharedLogsOnFailure;

impl Drop for SharedLogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Apache Kafka (shared broker) logs:");
            for l in shared().logs() {
                eprintln!("  {}", l.display());
            }
        }
    }
}
