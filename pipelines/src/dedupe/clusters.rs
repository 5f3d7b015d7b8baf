//! Union-find over verified duplicate pairs, and cluster representatives.

/// Disjoint sets over row indices, with path halving and union by size.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    /// `n` singleton sets.
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    /// The root of `x`'s set.
    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Merges the sets of `a` and `b`.
    pub fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a;
        self.size[a] += self.size[b];
    }
}

/// Which row of a cluster is kept as its representative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Representative {
    /// The first row in input order.
    First,
    /// The longest text (ties: the first).
    Longest,
}

/// Cluster of every row: `cluster[i]` is the representative row of `i`'s cluster.
pub fn representatives(
    sets: &mut UnionFind,
    lengths: &[usize],
    rule: Representative,
) -> Vec<usize> {
    let n = lengths.len();
    let mut best: Vec<Option<usize>> = vec![None; n];
    for row in 0..n {
        let root = sets.find(row);
        let better = match best[root] {
            None => true,
            Some(current) => rule == Representative::Longest && lengths[row] > lengths[current],
        };
        if better {
            best[root] = Some(row);
        }
    }
    (0..n)
        .map(|row| best[sets.find(row)].unwrap_or(row))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unions_are_transitive() {
        let mut sets = UnionFind::new(6);
        sets.union(0, 3);
        sets.union(3, 5);
        sets.union(1, 2);
        assert_eq!(sets.find(0), sets.find(5));
        assert_ne!(sets.find(0), sets.find(1));
        assert_eq!(sets.find(4), 4);
    }

    #[test]
    fn representatives_follow_the_rule() {
        let mut sets = UnionFind::new(5);
        sets.union(1, 3);
        sets.union(3, 4);
        let lengths = [5, 2, 9, 7, 7];
        assert_eq!(
            representatives(&mut sets.clone(), &lengths, Representative::First),
            [0, 1, 2, 1, 1]
        );
        assert_eq!(
            representatives(&mut sets, &lengths, Representative::Longest),
            [0, 3, 2, 3, 3]
        );
    }

    #[test]
    fn no_unions_keep_every_row_alone_and_one_row_works() {
        let mut sets = UnionFind::new(3);
        assert_eq!(
            representatives(&mut sets, &[1, 1, 1], Representative::First),
            [0, 1, 2]
        );
        let mut one = UnionFind::new(1);
        assert_eq!(
            representatives(&mut one, &[0], Representative::Longest),
            [0]
        );
    }
}
