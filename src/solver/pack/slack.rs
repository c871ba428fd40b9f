//! An index over the planned nodes' spare room, so that filling slack
//! (phase 2 of the packer) visits only nodes with room for one more pod of
//! the class at hand instead of every node planned so far.
//!
//! Requests differ from class to class, so a pointer per request vector (the
//! index this replaced) rarely helped: most classes scanned every node. The
//! tree below keeps, for each range of nodes, the largest slack in every
//! dimension. A range whose maxima cannot hold the request holds no node
//! that can, so it is skipped whole. The maxima are a necessary condition
//! only: the search still confirms each leaf it returns.

use super::super::tables::{D, Rv, fits};

/// Slack of a node that can take nothing (no candidate type left).
const NONE: Rv = [i64::MIN; D];

/// Per-dimension maxima of node slack over ranges of open-node positions.
#[derive(Debug, Default, Clone)]
pub(super) struct SlackIndex {
    /// Leaves in `[cap, 2 * cap)`; node `i` covers `2i` and `2i + 1`.
    max: Vec<Rv>,
    cap: usize,
    len: usize,
}

impl SlackIndex {
    /// Sets the slack of open position `pos`, growing the tree as nodes open.
    pub(super) fn set(&mut self, pos: usize, slack: Option<Rv>) {
        if pos >= self.cap {
            self.grow(pos + 1);
        }
        self.len = self.len.max(pos + 1);
        let mut i = self.cap + pos;
        self.max[i] = slack.unwrap_or(NONE);
        while i > 1 {
            i /= 2;
            let (l, r) = (self.max[2 * i], self.max[2 * i + 1]);
            let mut m = l;
            for d in 0..D {
                m[d] = m[d].max(r[d]);
            }
            if m == self.max[i] {
                break;
            }
            self.max[i] = m;
        }
    }

    /// The first open position at or after `from` whose slack holds `req`.
    ///
    /// The walk starts at `from`'s leaf and moves right subtree by subtree,
    /// so a caller stepping through the fits one by one (`from` = last + 1)
    /// pays for the distance between them, not a descent from the root each
    /// time. A parent's maxima can fit while neither child does (they are
    /// per dimension), so a failed child just moves the walk right again.
    pub(super) fn first_fit(&self, from: usize, req: &Rv) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        let mut i = self.cap + from;
        loop {
            if fits(req, &self.max[i]) {
                if i >= self.cap {
                    // Leaves past `len` hold NONE, which fits no request.
                    return Some(i - self.cap);
                }
                i *= 2;
                continue;
            }
            // Up while a right child; the root (1) climbs to 0: nothing left.
            while i & 1 == 1 {
                i >>= 1;
            }
            if i == 0 {
                return None;
            }
            i += 1;
        }
    }

    /// Doubles the capacity until `need` positions fit, keeping the leaves.
    fn grow(&mut self, need: usize) {
        let mut cap = self.cap.max(64);
        while cap < need {
            cap *= 2;
        }
        let mut max = vec![NONE; 2 * cap];
        if self.cap > 0 {
            max[cap..cap + self.len].copy_from_slice(&self.max[self.cap..self.cap + self.len]);
        }
        for i in (1..cap).rev() {
            let (l, r) = (max[2 * i], max[2 * i + 1]);
            let mut m = l;
            for d in 0..D {
                m[d] = m[d].max(r[d]);
            }
            max[i] = m;
        }
        self.max = max;
        self.cap = cap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rv(cpu: i64, mem: i64) -> Rv {
        let mut r = [0; D];
        r[0] = cpu;
        r[1] = mem;
        r
    }

    /// The index agrees with a linear scan after arbitrary updates.
    #[test]
    fn first_fit_matches_a_linear_scan() {
        let mut idx = SlackIndex::default();
        let mut slack: Vec<Option<Rv>> = Vec::new();
        // A small deterministic generator: no test dependency needed.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..3000 {
            let pos = if slack.is_empty() || next() % 3 == 0 {
                slack.len()
            } else {
                (next() % slack.len() as u64) as usize
            };
            let s = if next() % 10 == 0 {
                None
            } else {
                Some(rv((next() % 16) as i64 - 2, (next() % 16) as i64 - 2))
            };
            if pos == slack.len() {
                slack.push(s);
            } else {
                slack[pos] = s;
            }
            idx.set(pos, s);
            let req = rv((next() % 8) as i64, (next() % 8) as i64);
            let from = (next() % (slack.len() as u64 + 1)) as usize;
            let want = (from..slack.len()).find(|&i| slack[i].is_some_and(|s| fits(&req, &s)));
            assert_eq!(idx.first_fit(from, &req), want, "step {step}");
        }
    }

    #[test]
    fn empty_index_finds_nothing() {
        let idx = SlackIndex::default();
        assert_eq!(idx.first_fit(0, &rv(1, 1)), None);
    }
}
