//! Clusters from verified pairs by centre linkage.
//!
//! Union-find over verified pairs would chain A~B, B~C, C~D into one cluster
//! whose ends were never compared. Here every duplicate matches its cluster's
//! centre directly: groups (distinct texts) are visited in the order of the
//! representative rule; a group not yet in a cluster becomes a centre and takes
//! every group not yet in a cluster that was verified against it, best score
//! first, up to the size cap. A group verified only against members of other
//! clusters becomes a centre of its own.

/// Which group of a cluster becomes its centre, and so its representative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Representative {
    /// The first row in input order.
    First,
    /// The longest text (ties: the first).
    Longest,
}

/// A verified duplicate pair of groups and its cross-encoder score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    pub a: usize,
    pub b: usize,
    pub score: f32,
}

/// The cluster of every group.
#[derive(Debug, Clone, PartialEq)]
pub struct Clusters {
    /// `centre[g]`: the centre group of `g`'s cluster (`g` itself for a centre).
    pub centre: Vec<usize>,
    /// `score[g]`: the verified score of `g` against its centre (`None` for centres).
    pub score: Vec<Option<f32>>,
    /// Centres that left a verified neighbour out because of the size cap.
    pub capped: Vec<usize>,
}

/// Centre linkage over groups `0..sizes.len()` (`sizes[g]`: rows in group `g`),
/// visiting groups in `order`; a cluster holds at most `max_rows` rows unless
/// its centre group alone is larger.
pub fn centre_clusters(
    sizes: &[usize],
    edges: &[Edge],
    order: &[usize],
    max_rows: Option<usize>,
) -> Clusters {
    let n = sizes.len();
    let neighbours = neighbours_by_score(n, edges);
    let mut clusters = Clusters {
        centre: (0..n).collect(),
        score: vec![None; n],
        capped: Vec::new(),
    };
    let mut assigned = vec![false; n];
    for &centre in order {
        if assigned[centre] {
            continue;
        }
        assigned[centre] = true;
        let mut rows = sizes[centre];
        let mut capped = false;
        for &(member, score) in &neighbours[centre] {
            if assigned[member] {
                continue;
            }
            if max_rows.is_some_and(|max| rows + sizes[member] > max) {
                capped = true;
                continue;
            }
            assigned[member] = true;
            rows += sizes[member];
            clusters.centre[member] = centre;
            clusters.score[member] = Some(score);
        }
        if capped {
            clusters.capped.push(centre);
        }
    }
    clusters
}

/// Each group's verified neighbours, best score first (ties: lower group first).
fn neighbours_by_score(n: usize, edges: &[Edge]) -> Vec<Vec<(usize, f32)>> {
    let mut neighbours: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n];
    for edge in edges {
        neighbours[edge.a].push((edge.b, edge.score));
        neighbours[edge.b].push((edge.a, edge.score));
    }
    for list in &mut neighbours {
        list.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    }
    neighbours
}

/// The order in which groups are tried as centres: by their head row
/// (`First`) or by the length of their text, longest first (`Longest`).
pub fn centre_order(heads: &[usize], lengths: &[usize], rule: Representative) -> Vec<usize> {
    let mut order: Vec<usize> = (0..heads.len()).collect();
    match rule {
        Representative::First => order.sort_by_key(|&g| heads[g]),
        Representative::Longest => {
            order.sort_by_key(|&g| (std::cmp::Reverse(lengths[g]), heads[g]))
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(a: usize, b: usize, score: f32) -> Edge {
        Edge { a, b, score }
    }

    #[test]
    fn a_chain_is_split_where_members_do_not_match_the_centre() {
        // 0~1, 1~2, 2~3: the ends never matched.
        let edges = [edge(0, 1, 0.9), edge(1, 2, 0.8), edge(2, 3, 0.9)];
        let clusters = centre_clusters(&[1; 4], &edges, &[0, 1, 2, 3], None);
        assert_eq!(clusters.centre, [0, 0, 2, 2]);
        assert_eq!(clusters.score, [None, Some(0.9), None, Some(0.9)]);
        assert!(clusters.capped.is_empty());
    }

    #[test]
    fn a_member_joins_the_first_centre_it_matches_and_members_come_best_first() {
        let edges = [edge(0, 2, 0.8), edge(1, 2, 0.95), edge(0, 3, 0.9)];
        let clusters = centre_clusters(&[1; 4], &edges, &[0, 1, 2, 3], None);
        assert_eq!(clusters.centre, [0, 1, 0, 0]);
        assert_eq!(clusters.score[2], Some(0.8));
        // A cap of 2 rows keeps the better match (3, 0.9) and leaves 2 to its other centre.
        let capped = centre_clusters(&[1; 4], &edges, &[0, 1, 2, 3], Some(2));
        assert_eq!(capped.centre, [0, 1, 1, 0]);
        assert_eq!(capped.capped, [0]);
    }

    #[test]
    fn group_sizes_count_against_the_cap() {
        let edges = [edge(0, 1, 0.9), edge(0, 2, 0.8)];
        let clusters = centre_clusters(&[2, 2, 1], &edges, &[0, 1, 2], Some(3));
        assert_eq!(clusters.centre, [0, 1, 0]);
        assert_eq!(clusters.capped, [0]);
    }

    #[test]
    fn the_rule_orders_the_centres() {
        let heads = [0, 3, 5];
        let lengths = [5, 9, 9];
        assert_eq!(
            centre_order(&heads, &lengths, Representative::First),
            [0, 1, 2]
        );
        assert_eq!(
            centre_order(&heads, &lengths, Representative::Longest),
            [1, 2, 0]
        );
        let clusters = centre_clusters(&[1; 3], &[edge(0, 1, 0.9)], &[1, 2, 0], None);
        assert_eq!(clusters.centre, [1, 1, 2]);
    }
}
