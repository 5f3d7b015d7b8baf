//! Which files of a repo a model needs, and which ONNX graph to load: the
//! one `--onnx-file` names, the default graph, or with `auto-int8` the
//! published int8 variant that suits this CPU.

use std::path::Path;

/// The `--onnx-file` value that picks the int8 graph for this CPU.
pub const AUTO_INT8: &str = "auto-int8";

/// Files every model needs besides its graph.
pub const REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];

/// Files read when present: tokenizer and sentence-transformers settings,
/// and a bi-encoder's pooling.
pub const OPTIONAL_FILES: [&str; 6] = [
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config_sentence_transformers.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// The default graphs, in the order they are looked for.
pub const DEFAULT_GRAPHS: [&str; 2] = ["model.onnx", "onnx/model.onnx"];

/// How the graph is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphChoice {
    /// `model.onnx` or `onnx/model.onnx`; in a full listing, also the only graph.
    Default,
    /// A path relative to the model's root.
    File(String),
    /// The int8 variant for this CPU.
    AutoInt8,
}

impl GraphChoice {
    /// The choice an `--onnx-file` value asks for.
    pub fn from_flag(flag: Option<&Path>) -> Self {
        match flag {
            None => Self::Default,
            Some(path) if path == Path::new(AUTO_INT8) => Self::AutoInt8,
            Some(path) => Self::File(path.to_string_lossy().replace('\\', "/")),
        }
    }
}

/// Why no graph was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unchosen {
    /// No `.onnx` file at all, or not the default one in a partial listing.
    NoGraph,
    /// The named file is not there.
    Missing(String),
    /// Several graphs, none of them the default.
    Ambiguous(Vec<String>),
    /// No int8 variant this CPU can run; the int8 graphs that are there.
    NoInt8(Vec<String>),
}

/// Chooses the graph among `files` (paths relative to the repo root, `/`
/// separated). `complete` says whether `files` is everything the repo has
/// (the Hub's listing) or only what a cache holds: the only graph of a repo
/// is its default, the only graph of a cache is not.
pub fn choose(
    files: &[String],
    choice: &GraphChoice,
    complete: bool,
    int8_order: &[&str],
) -> Result<String, Unchosen> {
    let has = |name: &str| files.iter().any(|f| f == name);
    match choice {
        GraphChoice::File(file) if has(file) => Ok(file.clone()),
        GraphChoice::File(file) => Err(Unchosen::Missing(file.clone())),
        GraphChoice::Default => {
            if let Some(found) = DEFAULT_GRAPHS.iter().find(|g| has(g)) {
                return Ok(found.to_string());
            }
            let graphs = graphs(files);
            match graphs.as_slice() {
                [] => Err(Unchosen::NoGraph),
                [only] if complete => Ok(only.clone()),
                _ if !complete => Err(Unchosen::Missing(DEFAULT_GRAPHS[1].to_string())),
                _ => Err(Unchosen::Ambiguous(graphs)),
            }
        }
        GraphChoice::AutoInt8 => int8_order
            .iter()
            .find_map(|isa| int8_variant(files, isa))
            .ok_or_else(|| {
                Unchosen::NoInt8(graphs(files).into_iter().filter(|g| is_int8(g)).collect())
            }),
    }
}

/// The instruction sets whose int8 graphs this CPU runs, best first, from
/// its `/proc/cpuinfo` flags (see [`crossflow::CpuInfo`]) and architecture.
pub fn int8_order(features: &[&str], arch: &str) -> Vec<&'static str> {
    if arch == "aarch64" {
        return vec!["arm64"];
    }
    let has = |flag: &str| features.contains(&flag);
    let mut order = Vec::new();
    if has("avx512_vnni") {
        order.push("avx512_vnni");
    }
    if has("avx512f") {
        order.push("avx512");
    }
    if has("avx2") {
        order.push("avx2");
    }
    order
}

/// External-data files stored beside `graph` (`model.onnx_data`,
/// `model.onnx.data`), as exporters write them for graphs over 2 GB.
pub fn external_data(graph: &str, files: &[String]) -> Vec<String> {
    [format!("{graph}_data"), format!("{graph}.data")]
        .into_iter()
        .filter(|name| files.contains(name))
        .collect()
}

/// Every file the model needs from `files`, the graph and its data included.
pub fn needed_files(graph: &str, files: &[String]) -> Vec<String> {
    let mut needed: Vec<String> = REQUIRED_FILES.iter().map(|f| f.to_string()).collect();
    needed.extend(
        OPTIONAL_FILES
            .iter()
            .filter(|f| files.iter().any(|g| g == *f))
            .map(|f| f.to_string()),
    );
    needed.push(graph.to_string());
    needed.extend(external_data(graph, files));
    needed
}

fn graphs(files: &[String]) -> Vec<String> {
    let mut graphs: Vec<String> = files
        .iter()
        .filter(|f| f.ends_with(".onnx") && !f.contains("/.") && !f.starts_with('.'))
        .cloned()
        .collect();
    graphs.sort();
    graphs
}

fn is_int8(graph: &str) -> bool {
    let name = graph.rsplit('/').next().unwrap_or(graph);
    name.contains("qint8") || name.contains("quint8")
}

/// `onnx/model_qint8_{isa}.onnx` or `model_quint8_{isa}.onnx`, under `onnx/` first.
fn int8_variant(files: &[String], isa: &str) -> Option<String> {
    ["onnx/", ""].iter().find_map(|dir| {
        ["qint8", "quint8"].iter().find_map(|kind| {
            let name = format!("{dir}model_{kind}_{isa}.onnx");
            files.contains(&name).then_some(name)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    const PUBLISHED: [&str; 8] = [
        "config.json",
        "tokenizer.json",
        "onnx/model.onnx",
        "onnx/model_O1.onnx",
        "onnx/model_qint8_arm64.onnx",
        "onnx/model_qint8_avx512.onnx",
        "onnx/model_qint8_avx512_vnni.onnx",
        "onnx/model_quint8_avx2.onnx",
    ];

    #[test]
    fn the_default_graph_is_never_a_silent_pick_among_several() {
        let files = listing(&PUBLISHED);
        let order = int8_order(&["avx2"], "x86_64");
        assert_eq!(
            choose(&files, &GraphChoice::Default, true, &order).unwrap(),
            "onnx/model.onnx"
        );
        let files = listing(&["onnx/model_O1.onnx", "onnx/model_O2.onnx"]);
        let err = choose(&files, &GraphChoice::Default, true, &order).unwrap_err();
        assert_eq!(err, Unchosen::Ambiguous(files.clone()));
        let one = listing(&["onnx/model_O1.onnx"]);
        assert_eq!(
            choose(&one, &GraphChoice::Default, true, &order).unwrap(),
            "onnx/model_O1.onnx"
        );
        let err = choose(&one, &GraphChoice::Default, false, &order).unwrap_err();
        assert_eq!(err, Unchosen::Missing("onnx/model.onnx".into()));
        let none = listing(&["config.json", "model.safetensors"]);
        assert_eq!(
            choose(&none, &GraphChoice::Default, true, &order),
            Err(Unchosen::NoGraph)
        );
    }

    #[test]
    fn auto_int8_follows_the_cpu_flags() {
        let files = listing(&PUBLISHED);
        let pick = |features: &[&str], arch: &str| {
            choose(
                &files,
                &GraphChoice::AutoInt8,
                true,
                &int8_order(features, arch),
            )
        };
        let vnni = ["avx2", "avx512f", "avx512_vnni", "amx_int8"];
        assert_eq!(
            pick(&vnni, "x86_64").unwrap(),
            "onnx/model_qint8_avx512_vnni.onnx"
        );
        assert_eq!(
            pick(&["avx2", "avx512f"], "x86_64").unwrap(),
            "onnx/model_qint8_avx512.onnx"
        );
        assert_eq!(
            pick(&["avx2"], "x86_64").unwrap(),
            "onnx/model_quint8_avx2.onnx"
        );
        assert_eq!(pick(&[], "aarch64").unwrap(), "onnx/model_qint8_arm64.onnx");
        let Err(Unchosen::NoInt8(published)) = pick(&[], "x86_64") else {
            panic!("a CPU without AVX2 has no int8 variant");
        };
        assert_eq!(published.len(), 4);
        let avx2_only = listing(&["onnx/model_quint8_avx2.onnx"]);
        let chosen = choose(
            &avx2_only,
            &GraphChoice::AutoInt8,
            true,
            &int8_order(&vnni, "x86_64"),
        );
        assert_eq!(chosen.unwrap(), "onnx/model_quint8_avx2.onnx");
    }

    #[test]
    fn needed_files_are_the_graph_its_data_and_the_configs_present() {
        let files = listing(&[
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors",
            "onnx/model.onnx",
            "onnx/model.onnx_data",
            "1_Pooling/config.json",
        ]);
        assert_eq!(
            needed_files("onnx/model.onnx", &files),
            listing(&[
                "config.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "1_Pooling/config.json",
                "onnx/model.onnx",
                "onnx/model.onnx_data",
            ])
        );
        assert_eq!(
            GraphChoice::from_flag(Some(Path::new("auto-int8"))),
            GraphChoice::AutoInt8
        );
        let named = GraphChoice::from_flag(Some(Path::new("onnx/model_O1.onnx")));
        assert_eq!(named, GraphChoice::File("onnx/model_O1.onnx".into()));
    }
}
