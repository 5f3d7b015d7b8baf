//! Clusters from verified pairs by centre linkage.
//!
//! Union-find over verified pairs would chain A~B, B~C, C~D into one cluster
//! whose ends were never compared. Here every duplicate matches its cluster's
//! centre directly: groups (distinct texts) are visited in the order of the
//! representative rule; a group not yet in a cluster becomes a centre and takes
//! every group not yet in a cluster that was verified against it, best score
//! first, up to the size cap. A group verified only against members of other
//! clusters becomes a centre of its own.
//!
//! The cross-encoder scores a candidate pair only when the clusters can depend
//! on it: both its groups still unclustered (see [`centre_clusters`]).

/// Which group of a cluster becomes its centre, and so its representative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Representative {
    /// The first row in input order.
    First,
    /// The longest text (ties: the first).
    Longest,
}

/// How candidate pairs become clusters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linkage {
    /// Score at or above which a pair is a duplicate.
    pub threshold: f32,
    /// Largest cluster in rows (a centre group alone may be larger).
    pub max_rows: Option<usize>,
    /// Pairs scored per call of the scorer (at least one group's pairs).
    pub window: usize,
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

/// Centre linkage over groups `0..sizes.len()` (`sizes[g]`: rows in group
/// `g`) and candidate `pairs` of groups, visiting groups in `order`.
///
/// Pairs are scored lazily, `linkage.window` at a time, by `score` (given pair
/// indices, it returns their scores in order): only pairs whose two groups are
/// both still unclustered when the window starts, since a group already in a
/// cluster can neither become a centre nor join one. The clusters are those of
/// scoring every pair first. Returns the clusters and each pair's score
/// (`None`: not needed, not scored).
pub fn centre_clusters<E>(
    sizes: &[usize],
    pairs: &[(usize, usize)],
    order: &[usize],
    linkage: Linkage,
    mut score: impl FnMut(&[usize]) -> Result<Vec<f32>, E>,
) -> Result<(Clusters, Vec<Option<f32>>), E> {
    let mut state = Linking::new(sizes, pairs);
    let mut next = 0;
    while next < order.len() {
        let (end, wanted) = state.window(order, next, linkage.window);
        if !wanted.is_empty() {
            let scores = score(&wanted)?;
            assert_eq!(scores.len(), wanted.len(), "one score per pair scored");
            for (&p, s) in wanted.iter().zip(scores) {
                state.scores[p] = Some(s);
            }
        }
        for &g in &order[next..end] {
            state.take(g, linkage);
        }
        next = end;
    }
    Ok((state.clusters, state.scores))
}

/// The state of a centre-linkage run.
struct Linking<'a> {
    sizes: &'a [usize],
    pairs: &'a [(usize, usize)],
    /// Indices of the pairs of each group.
    of_group: Vec<Vec<usize>>,
    scores: Vec<Option<f32>>,
    /// Pairs already taken into a window (scored or being scored).
    queued: Vec<bool>,
    assigned: Vec<bool>,
    clusters: Clusters,
}

impl<'a> Linking<'a> {
    fn new(sizes: &'a [usize], pairs: &'a [(usize, usize)]) -> Self {
        let n = sizes.len();
        let mut of_group = vec![Vec::new(); n];
        for (p, &(a, b)) in pairs.iter().enumerate() {
            of_group[a].push(p);
            of_group[b].push(p);
        }
        Self {
            sizes,
            pairs,
            of_group,
            scores: vec![None; pairs.len()],
            queued: vec![false; pairs.len()],
            assigned: vec![false; n],
            clusters: Clusters {
                centre: (0..n).collect(),
                score: vec![None; n],
                capped: Vec::new(),
            },
        }
    }

    fn other(&self, p: usize, g: usize) -> usize {
        let (a, b) = self.pairs[p];
        if a == g { b } else { a }
    }

    /// From `order[next..]`, the groups whose unqueued pairs to unclustered
    /// groups make up about `size` pairs: the end of the window and the pairs.
    fn window(&mut self, order: &[usize], next: usize, size: usize) -> (usize, Vec<usize>) {
        let mut wanted = Vec::new();
        let mut end = next;
        while end < order.len() && (end == next || wanted.len() < size) {
            let g = order[end];
            end += 1;
            if self.assigned[g] {
                continue;
            }
            for &p in &self.of_group[g] {
                if !self.queued[p] && !self.assigned[self.other(p, g)] {
                    self.queued[p] = true;
                    wanted.push(p);
                }
            }
        }
        (end, wanted)
    }

    /// Makes `centre` a centre, unless already clustered, and gives it every
    /// unclustered group verified against it, best score first (ties: lower
    /// group first), within the size cap.
    fn take(&mut self, centre: usize, linkage: Linkage) {
        if self.assigned[centre] {
            return;
        }
        self.assigned[centre] = true;
        let mut members: Vec<(usize, f32)> = self.of_group[centre]
            .iter()
            .map(|&p| (p, self.other(p, centre)))
            .filter(|&(_, g)| !self.assigned[g])
            .map(|(p, g)| {
                (
                    g,
                    self.scores[p]
                        .expect("a pair to an unclustered group was scored in its window"),
                )
            })
            .filter(|&(_, s)| s >= linkage.threshold)
            .collect();
        members.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        let mut rows = self.sizes[centre];
        let mut capped = false;
        for (member, score) in members {
            if linkage
                .max_rows
                .is_some_and(|max| rows + self.sizes[member] > max)
            {
                capped = true;
                continue;
            }
            self.assigned[member] = true;
            rows += self.sizes[member];
            self.clusters.centre[member] = centre;
            self.clusters.score[member] = Some(score);
        }
        if capped {
            self.clusters.capped.push(centre);
        }
    }
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

    /// Clusters of pairs `(a, b, score)` all scored, threshold 0.5.
    fn link(
        sizes: &[usize],
        scored: &[(usize, usize, f32)],
        order: &[usize],
        max: Option<usize>,
    ) -> Clusters {
        link_in_windows(sizes, scored, order, max, usize::MAX).0
    }

    /// The clusters, and the pairs scored, windows of `window` pairs.
    fn link_in_windows(
        sizes: &[usize],
        scored: &[(usize, usize, f32)],
        order: &[usize],
        max_rows: Option<usize>,
        window: usize,
    ) -> (Clusters, Vec<Option<f32>>) {
        let pairs: Vec<(usize, usize)> = scored.iter().map(|&(a, b, _)| (a, b)).collect();
        let linkage = Linkage {
            threshold: 0.5,
            max_rows,
            window,
        };
        centre_clusters(sizes, &pairs, order, linkage, |wanted| {
            Ok::<_, ()>(wanted.iter().map(|&p| scored[p].2).collect())
        })
        .unwrap()
    }

    #[test]
    fn a_chain_is_split_where_members_do_not_match_the_centre() {
        // 0~1, 1~2, 2~3: the ends never matched.
        let pairs = [(0, 1, 0.9), (1, 2, 0.8), (2, 3, 0.9)];
        let clusters = link(&[1; 4], &pairs, &[0, 1, 2, 3], None);
        assert_eq!(clusters.centre, [0, 0, 2, 2]);
        assert_eq!(clusters.score, [None, Some(0.9), None, Some(0.9)]);
        assert!(clusters.capped.is_empty());
    }

    #[test]
    fn a_member_joins_the_first_centre_it_matches_and_members_come_best_first() {
        let pairs = [(0, 2, 0.8), (1, 2, 0.95), (0, 3, 0.9), (1, 3, 0.4)];
        let clusters = link(&[1; 4], &pairs, &[0, 1, 2, 3], None);
        assert_eq!(clusters.centre, [0, 1, 0, 0]);
        assert_eq!(clusters.score[2], Some(0.8));
        // A cap of 2 rows keeps the better match (3, 0.9) and leaves 2 to its other centre.
        let capped = link(&[1; 4], &pairs, &[0, 1, 2, 3], Some(2));
        assert_eq!(capped.centre, [0, 1, 1, 0]);
        assert_eq!(capped.capped, [0]);
    }

    #[test]
    fn group_sizes_count_against_the_cap() {
        let pairs = [(0, 1, 0.9), (0, 2, 0.8)];
        let clusters = link(&[2, 2, 1], &pairs, &[0, 1, 2], Some(3));
        assert_eq!(clusters.centre, [0, 1, 0]);
        assert_eq!(clusters.capped, [0]);
    }

    #[test]
    fn pairs_of_clustered_groups_are_not_scored() {
        // 0 takes 1; 1's pairs to 2 and 3 can change nothing; 0~4 fails.
        let pairs = [
            (0, 1, 0.9),
            (1, 2, 0.9),
            (1, 3, 0.9),
            (2, 3, 0.9),
            (0, 4, 0.3),
            (4, 5, 0.9),
        ];
        let order = [0, 1, 2, 3, 4, 5];
        let (all_first, every) = link_in_windows(&[1; 6], &pairs, &order, None, usize::MAX);
        assert!(
            every.iter().all(Option::is_some),
            "one window scores every pair"
        );
        let (clusters, scores) = link_in_windows(&[1; 6], &pairs, &order, None, 1);
        assert_eq!(clusters, all_first, "the same clusters");
        assert_eq!(clusters.centre, [0, 0, 2, 2, 4, 4]);
        assert_eq!(
            scores,
            [Some(0.9), None, None, Some(0.9), Some(0.3), Some(0.9)],
            "1~2 and 1~3 are never scored"
        );
    }

    proptest::proptest! {
        /// Any window size, any cap, any visiting order: lazy scoring gives
        /// the clusters of scoring every pair first.
        #[test]
        fn windows_change_what_is_scored_not_the_clusters(
            sizes in proptest::collection::vec(1usize..4, 1..12),
            raw in proptest::collection::vec((0usize..12, 0usize..12, 0.0f32..1.0), 0..40),
            max_rows in proptest::option::of(1usize..8),
            window in 1usize..6,
            rotate in 0usize..12,
            reverse: bool,
        ) {
            let n = sizes.len();
            let mut seen = std::collections::HashSet::new();
            let pairs: Vec<(usize, usize, f32)> = raw
                .into_iter()
                .map(|(a, b, s)| (a % n, b % n, s))
                .filter(|&(a, b, _)| a < b && seen.insert((a, b)))
                .collect();
            let mut order: Vec<usize> = (0..n).collect();
            order.rotate_left(rotate % n);
            if reverse {
                order.reverse();
            }
            let (eager, every) = link_in_windows(&sizes, &pairs, &order, max_rows, usize::MAX);
            let (lazy, some) = link_in_windows(&sizes, &pairs, &order, max_rows, window);
            proptest::prop_assert_eq!(lazy, eager);
            proptest::prop_assert!(every.iter().all(Option::is_some));
            for (lazy, eager) in some.iter().zip(&every) {
                proptest::prop_assert!(lazy.is_none() || lazy == eager);
            }
        }
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
        let clusters = link(&[1; 3], &[(0, 1, 0.9)], &[1, 2, 0], None);
        assert_eq!(clusters.centre, [1, 1, 2]);
    }
}
