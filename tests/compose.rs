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
    assert_eq!(args.brokers.as_deref(), Some("kafka:19092"));
    assert_eq!(args.dlq_topic.as_deref(), Some("pairs-dlq"));
}
