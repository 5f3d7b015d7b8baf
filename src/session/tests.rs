//! Sessions of the bundled int8 graph.

use super::*;

fn load(sessions: usize) -> OrtModel {
    let settings = SessionSettings {
        sessions,
        intra_threads: Some(1),
        ..SessionSettings::default()
    };
    let path = crate::model::bundled_int8("crossflow-sts-minilm-l6");
    let bytes = std::fs::read(&path).unwrap();
    OrtModel::load(&path, GraphBytes::File(&bytes), &settings, &["logits"]).unwrap()
}

fn pairs() -> Vec<EncodedPair> {
    (4..12)
        .map(|n| EncodedPair {
            ids: (0..n).map(|i| 1000 + i as u32 * 37).collect(),
            type_ids: (0..n).map(|i| u32::from(i >= n / 2)).collect(),
            truncated: false,
        })
        .collect()
}

#[test]
fn the_sessions_of_a_cpu_graph_share_one_copy_of_its_weights() {
    let mut shared = load(2);
    let mut alone = load(1);
    assert_eq!(alone.shared_weights, 0, "nothing to share with");
    // Each session is given the 36 weight matrices of six layers, and the embeddings.
    assert!(shared.shared_weights >= 2 * 36, "{}", shared.shared_weights);
    let pairs = pairs();
    let members: Vec<&EncodedPair> = pairs.iter().collect();
    let batch = PaddedBatch::new(&members, 11, 0);
    let expected = alone.sessions[0].run(&batch).unwrap();
    for session in &mut shared.sessions {
        let got = session.run(&batch).unwrap();
        assert!(
            same_bits(&got.data, &expected.data),
            "{got:?} vs {expected:?}"
        );
    }
}
