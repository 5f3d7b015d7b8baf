//! Real Kafka-protocol brokers for tests, both from `scripts/setup`, each
//! started on a free port and stopped when dropped:
//! - tansu (in-memory), the default;
//! - noida-db, which hides aborted transactions from `read_committed`
//!   readers and keeps its data across restarts, for the exactly-once checks
//!   tansu cannot make. It never evicts a group member that died without
//!   leaving (no session timeout): a test that kills an instance on it
//!   restarts it with the same `group.instance.id` (static membership).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tempfile::TempDir;

use super::repo_root;

/// Which broker a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Tansu,
    Noida,
}

impl BrokerKind {
    fn binary(self) -> PathBuf {
        let path = match self {
            Self::Tansu => ".tansu/tansu",
            Self::Noida => ".noida/noida-db",
        };
        let binary = repo_root().join(path);
        assert!(
            binary.is_file(),
            "{} missing: run scripts/setup",
            binary.display()
        );
        binary
    }

    /// Whether aborted transactions are hidden from `read_committed` readers.
    pub fn hides_aborted(self) -> bool {
        self == Self::Noida
    }
}

/// A running broker.
pub struct Broker {
    kind: BrokerKind,
    process: Option<Child>,
    address: SocketAddr,
    /// noida-db's data directory, kept across restarts.
    data: TempDir,
    /// The broker's stdout and stderr, one file per start.
    logs: TempDir,
    starts: usize,
}

impl Broker {
    /// Starts tansu with in-memory storage and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_kind(BrokerKind::Tansu)
    }

    /// Starts a broker of `kind` on a free port.
    pub fn start_kind(kind: BrokerKind) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut broker = Broker {
            kind,
            process: None,
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            data: tempfile::tempdir().expect("broker data directory"),
            logs: tempfile::tempdir().expect("broker log directory"),
            starts: 0,
        };
        broker.restart();
        broker
    }

    /// The broker's kind.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// Kills the broker with SIGKILL (nothing flushed, no goodbye).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Stops the broker with SIGINT, as an orderly shutdown does (noida-db
    /// writes what it acknowledged; after kill -9 it can lose records it had
    /// acknowledged a moment before), and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let status = Command::new("kill")
                .args(["-INT", &process.id().to_string()])
                .status()
                .expect("kill -INT");
            assert!(status.success(), "kill -INT the broker: {status}");
            let started = Instant::now();
            while process.try_wait().expect("broker status").is_none() {
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = process.kill();
                    let _ = process.wait();
                    panic!("the broker did not stop within 30 s of SIGINT");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts the broker (again) on its port, with its data directory
    /// (noida-db keeps data across restarts; tansu starts empty), and waits
    /// until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.address.port().to_string();
        let mut command = Command::new(self.kind.binary());
        match self.kind {
            BrokerKind::Tansu => {
                let url = format!("tcp://{}", self.address);
                command
                    .args(["broker", "--listener-url", &url])
                    .args(["--advertised-listener-url", &url])
                    .args(["--storage-engine", "memory://tansu/"]);
            }
            BrokerKind::Noida => {
                command
                    .args(["start", "--only", "kafka", "--host", "127.0.0.1"])
                    .args(["--kafka-port", &port, "--data-dir"])
                    .arg(self.data.path());
            }
        }
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("broker log");
        let process = command
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", self.kind));
        self.process = Some(process);
        let started = Instant::now();
        while TcpStream::connect_timeout(&self.address, Duration::from_millis(100)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?} did not start",
                self.kind
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.logs.path().join(format!("start-{start}.log"))
    }

    /// Restarts the broker if it exited on its own (not by [`Broker::kill`]),
    /// as a supervisor would, and says how it exited.
    pub fn restart_if_exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.process.as_mut()?.try_wait().expect("broker status")?;
        self.process = None;
        self.restart();
        Some(status)
    }

    /// What the broker printed, start by start, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|start| {
                let text = std::fs::read_to_string(self.log_path(start)).unwrap_or_default();
                format!("--- broker start {start} ---\n{text}")
            })
            .collect()
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.address.to_string()
    }

    /// A client config pointing at this broker.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    /// A consumer reading every one of `partitions` partitions of `topic` from
    /// the start (`read_committed`, no group membership).
    pub fn reader(&self, topic: &str, partitions: i32) -> BaseConsumer {
        self.reader_with(topic, partitions, "read_committed")
    }

    /// [`Broker::reader`] with an `isolation.level`.
    pub fn reader_with(&self, topic: &str, partitions: i32, isolation: &str) -> BaseConsumer {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "crossflow-test-reader")
            .set("isolation.level", isolation)
            .create()
            .expect("reader");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        consumer
    }

    /// Creates topics with `partitions` partitions each.
    pub async fn create_topics(&self, topics: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().expect("admin client");
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        for result in admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .expect("create topics")
        {
            result.expect("topic created");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
