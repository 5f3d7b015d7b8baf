//! Flags, the settings file and how they merge.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    models: ModelArgs,
    #[command(flatten)]
    enrich: EnrichArgs,
}

#[test]
fn flags_win_over_the_file_and_defaults_fill_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("enrich.toml");
    std::fs::write(
        &file,
        "brokers = \"file:9092\"\ninput_topic = \"in\"\noutput_topic = \"out\"\ngroup_id = \"g\"\n\
         guarantee = \"exactly-once\"\nmax_batch_pairs = 64\n[kafka]\n\"security.protocol\" = \"SSL\"\n",
    )
    .unwrap();
    let cli = Cli::parse_from([
        "x",
        "--config",
        file.to_str().unwrap(),
        "--brokers",
        "flag:9092",
        "-X",
        "acks=all",
    ]);
    let mut models = cli.models.clone();
    let settings = cli.enrich.resolve(&mut models).unwrap();
    assert_eq!(settings.brokers, "flag:9092");
    assert_eq!(settings.dlq_topic, "in.dlq");
    assert_eq!(settings.guarantee, Guarantee::ExactlyOnce);
    // Two instances on one host get different transactional ids.
    let instance = format!("-{}", std::process::id());
    assert!(
        settings.transactional_id.starts_with("crossflow-g-")
            && settings.transactional_id.ends_with(&instance),
        "{}",
        settings.transactional_id
    );
    assert_eq!(settings.gather_messages, 64, "--max-batch-pairs, as before");
    assert_eq!(models.max_batch_pairs, Some(64));
    assert_eq!(settings.fields.a, FieldPath::new("a"));
    assert_eq!(
        settings.kafka,
        [
            ("security.protocol".into(), "SSL".into()),
            ("acks".into(), "all".into())
        ]
    );
}

#[test]
fn missing_settings_and_unknown_keys_are_errors() {
    let cli = Cli::parse_from(["x", "--brokers", "b:1"]);
    let err = cli
        .enrich
        .resolve(&mut cli.models.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--input-topic"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "brokerz = \"x\"\n").unwrap();
    let cli = Cli::parse_from(["x", "--config", file.to_str().unwrap()]);
    let err = cli
        .enrich
        .resolve(&mut cli.models.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("brokerz"), "{err}");
}

#[test]
fn settings_the_guarantees_rest_on_are_refused_in_x() {
    for setting in ["enable.auto.offset.store=true", "enable.auto.commit=false"] {
        let cli = Cli::parse_from([
            "x",
            "--brokers",
            "b:1",
            "--input-topic",
            "i",
            "--output-topic",
            "o",
            "--group-id",
            "g",
            "-X",
            setting,
        ]);
        let err = cli.enrich.resolve(&mut cli.models.clone()).unwrap_err();
        let key = setting.split('=').next().unwrap();
        assert!(err.to_string().contains(&format!("-X {key}")), "{err}");
        assert_eq!(err.exit_code(), crate::EXIT_USAGE);
    }
}

/// A value for each model flag, as it is written in a settings file.
fn file_value(flag: &str) -> &'static str {
    match flag {
        "model" | "nli_model" | "onnx_file" | "ort_lib" => "\"/some/path\"",
        "device" => "\"cuda:1\"",
        // Any case, as on the command line.
        "activation" => "\"Sigmoid\"",
        "batch_invariant" => "\"One-Pair\"",
        "hf_token" => "\"hf_secret\"",
        // A switch: `--offline` on the command line.
        "offline" => "true",
        _ => "7",
    }
}

#[test]
fn every_model_flag_can_be_set_in_the_file_and_a_flag_wins() {
    use clap::CommandFactory;
    #[derive(Parser)]
    struct ModelsOnly {
        #[command(flatten)]
        models: ModelArgs,
    }
    let flags: Vec<String> = ModelsOnly::command()
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    assert!(flags.len() >= 16, "{flags:?}");
    let dir = tempfile::tempdir().unwrap();
    for flag in &flags {
        let file = dir.path().join(format!("{flag}.toml"));
        let text = format!(
            "brokers = \"b:1\"\ninput_topic = \"i\"\noutput_topic = \"o\"\n\
             group_id = \"g\"\n[models]\n{flag} = {}\n",
            file_value(flag)
        );
        std::fs::write(&file, text).unwrap();
        let cli = Cli::parse_from(["x", "--config", file.to_str().unwrap()]);
        let mut models = cli.models.clone();
        cli.enrich.resolve(&mut models).unwrap();
        let option = format!("--{}", flag.replace('_', "-"));
        let value = file_value(flag).trim_matches('"');
        let args = match value {
            "true" => vec!["x", &option],
            _ => vec!["x", &option, value],
        };
        let from_flag = ModelsOnly::parse_from(args).models;
        assert_ne!(
            from_flag,
            ModelArgs::default(),
            "{option} {value} sets something"
        );
        assert_eq!(
            models, from_flag,
            "{flag} in the file sets what {option} sets"
        );
    }
    let file = dir.path().join("both.toml");
    std::fs::write(
        &file,
        "brokers = \"b:1\"\ninput_topic = \"i\"\noutput_topic = \"o\"\ngroup_id = \"g\"\n\
         gather_messages = 32\n[models]\nsessions = 3\nmax_batch_pairs = 8\n",
    )
    .unwrap();
    let cli = Cli::parse_from(["x", "--config", file.to_str().unwrap(), "--sessions", "2"]);
    let mut models = cli.models.clone();
    let settings = cli.enrich.resolve(&mut models).unwrap();
    assert_eq!(models.sessions, Some(2), "the flag wins");
    assert_eq!(models.max_batch_pairs, Some(8), "the engine's cap");
    assert_eq!(
        settings.gather_messages, 32,
        "the gather size, apart from it"
    );
}
