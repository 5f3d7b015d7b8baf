//! docker-compose.yml (no Docker engine here): valid YAML, the services a user
//! needs, and an `enrich` command that crossflow's own parser accepts.

use clap::Parser;
use crossflow_pipelines::cli::{Cli, Command};
use crossflow_tests::repo_root;
use serde_yaml::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml"))
        .expect("docker-compose.yml");
    serde_yaml::from_str(&text).expect("valid YAML")
}

#[test]
fn compose_has_kafka_topic_creation_and_enrich() {
    let doc = compose();
    let services = &doc["services"];
    let kafka_image = services["kafka"]["image"].as_str().expect("kafka image");
    assert!(
        kafka_image.starts_with("apache/kafka:"),
        "official Apache Kafka image: {kafka_image}"
    );
    let env = &services["kafka"]["environment"];
    assert!(
        env["KAFKA_PROCESS_ROLES"]
            .as_str()
            .unwrap()
            .contains("controller"),
        "KRaft mode"
    );
    assert!(
        services["create-topics"]["command"][0]
            .as_str()
            .unwrap()
            .contains("kafka-topics.sh")
    );
    assert_eq!(services["enrich"]["build"].as_str(), Some("."));
    assert!(repo_root().join("Dockerfile").is_file());
}

#[test]
fn the_compose_enrich_command_parses_with_crossflows_cli() {
    let doc = compose();
    let command: Vec<String> = doc["services"]["enrich"]["command"]
        .as_sequence()
        .expect("command list")
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| serde_yaml::to_string(v).unwrap())
        })
        .collect();
    let cli = Cli::try_parse_from(std::iter::once("crossflow".to_string()).chain(command))
        .expect("valid crossflow arguments");
    let Command::Enrich(args) = cli.command else {
        panic!("enrich")
    };
    assert_eq!(args.stream.brokers.as_deref(), Some("kafka:19092"));
    assert_eq!(args.stream.dlq_topic.as_deref(), Some("pairs-dlq"));
}

fn cluster_compose() -> Value {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.cluster.yml"))
        .expect("docker-compose.cluster.yml");
    let mut doc: Value = serde_yaml::from_str(&text).expect("valid YAML");
    doc.apply_merge().expect("merge keys");
    doc
}

fn parse(command: &[String]) -> Cli {
    Cli::try_parse_from(std::iter::once("crossflow".to_string()).chain(command.iter().cloned()))
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

#[test]
fn the_cluster_compose_runs_a_scheduler_replicated_executors_and_a_client_on_one_volume() {
    let doc = cluster_compose();
    let services = &doc["services"];
    for name in ["scheduler", "executor", "client"] {
        assert_eq!(services[name]["build"].as_str(), Some("."), "{name}");
        let volumes = services[name]["volumes"].as_sequence().expect("volumes");
        assert!(
            volumes
                .iter()
                .any(|v| v.as_str().unwrap().ends_with(":/data")),
            "{name} mounts the shared data volume"
        );
    }
    assert!(services["executor"]["deploy"]["replicas"].as_u64().unwrap() >= 2);

    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let Command::Scheduler(scheduler) = parse(&strings(&services["scheduler"]["command"])).command
    else {
        panic!("scheduler")
    };
    assert_eq!(scheduler.bind.port(), 50050);
    let data = vec![std::path::PathBuf::from("/data")];
    assert_eq!(scheduler.data_roots, data, "plans stay on the data volume");
    let environment = &doc["x-node"]["environment"];
    assert!(
        environment["CROSSFLOW_CLUSTER_TOKEN"]
            .as_str()
            .is_some_and(|v| v.starts_with("${CROSSFLOW_CLUSTER_TOKEN:?")),
        "every node needs the cluster token"
    );
    assert!(
        services["scheduler"]["ports"].is_null(),
        "the scheduler port is not published on the host"
    );

    // The executor runs through a shell to advertise its own address.
    let shell = services["executor"]["command"][0].as_str().unwrap();
    let words: Vec<String> = shell
        .replace("\"$$(hostname -i)\"", "10.0.0.7")
        .split_whitespace()
        .skip_while(|w| !w.ends_with("/crossflow"))
        .skip(1)
        .map(str::to_string)
        .collect();
    let Command::Executor(executor) = parse(&words).command else {
        panic!("executor: {shell}")
    };
    assert_eq!(executor.scheduler, "scheduler:50050");
    assert_eq!(executor.external_host.as_deref(), Some("10.0.0.7"));
    assert!(executor.metrics_addr.is_some());
    assert_eq!(executor.data_roots, data);

    let Command::Sql(client) = parse(&strings(&services["client"]["command"])).command else {
        panic!("client")
    };
    assert_eq!(
        client.cluster.scheduler.as_deref(),
        Some("df://scheduler:50050")
    );
}
