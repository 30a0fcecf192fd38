//! Checking a room's seqs as one v2 socket receives them.
//!
//! Protocol v2 promises each member socket every seq of a room after its
//! join result's, once each and in order (docs/protocol.md §22). A
//! [`SeqCheck`] follows one socket in one room from a starting seq and
//! counts every way that promise can break: a jump ahead (a *gap*, whose
//! skipped seqs are *missing* until they come), a skipped seq arriving
//! later (*out of order*), and a seq seen twice (*duplicate*). On the happy
//! path it is one comparison and one increment per message.

use std::collections::BTreeSet;

use serde::Serialize;
use whisper_protocol::v2::Seq;

/// Most skipped seqs remembered one by one; past it a gap only counts its
/// size (a server that broken is broken enough).
const MAX_REMEMBERED: u64 = 100_000;

/// One socket's view of one room's seqs.
#[derive(Debug, Clone)]
pub struct SeqCheck {
    /// The seq expected next: everything before it has come or is in
    /// `skipped`.
    next: u64,
    /// Seqs jumped over and not seen since.
    skipped: BTreeSet<u64>,
    /// Skipped seqs past [`MAX_REMEMBERED`], counted only.
    forgotten: u64,
    counts: SeqCounts,
}

/// What went wrong, summed over sockets for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeqCounts {
    /// Times a seq jumped ahead of the one expected.
    pub gaps: u64,
    /// Seqs skipped by a gap that never came (or, with
    /// [`SeqCheck::missing_until`], not there at all).
    pub missing: u64,
    /// Seqs received again.
    pub duplicates: u64,
    /// Skipped seqs that came after a later one.
    pub out_of_order: u64,
}

impl SeqCounts {
    /// Adds another socket's counts.
    pub fn add(&mut self, other: SeqCounts) {
        self.gaps += other.gaps;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
    }
}

impl SeqCheck {
    /// A socket that holds everything up to `last` (a join result's `seq`,
    /// or a rejoin's `since`).
    pub fn after(last: Seq) -> SeqCheck {
        SeqCheck {
            next: last.0 + 1,
            skipped: BTreeSet::new(),
            forgotten: 0,
            counts: SeqCounts::default(),
        }
    }

    /// Takes one received seq.
    pub fn observe(&mut self, seq: Seq) {
        let seq = seq.0;
        if seq == self.next {
            self.next += 1;
        } else if seq > self.next {
            self.counts.gaps += 1;
            let remembered = (seq - self.next).min(MAX_REMEMBERED);
            self.skipped.extend(self.next..self.next + remembered);
            self.forgotten += seq - self.next - remembered;
            self.next = seq + 1;
        } else if self.skipped.remove(&seq) {
            self.counts.out_of_order += 1;
        } else {
            self.counts.duplicates += 1;
        }
    }

    /// The highest seq received in order, or the starting one.
    pub fn last(&self) -> Seq {
        Seq(self.next - 1)
    }

    /// Whether every seq up to `target` has come.
    pub fn has_all_until(&self, target: Seq) -> bool {
        self.next > target.0 && self.skipped.first().is_none_or(|first| *first > target.0)
    }

    /// The counts so far, with skipped seqs still missing.
    pub fn counts(&self) -> SeqCounts {
        SeqCounts {
            missing: self.skipped.len() as u64 + self.forgotten,
            ..self.counts
        }
    }

    /// The counts, taking every seq up to `target` that has not come as
    /// missing too (a socket that should have caught up to `target`).
    pub fn missing_until(&self, target: Seq) -> SeqCounts {
        let mut counts = self.counts();
        counts.missing += (target.0 + 1).saturating_sub(self.next);
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(check: &mut SeqCheck, list: &[u64]) {
        for seq in list {
            check.observe(Seq(*seq));
        }
    }

    #[test]
    fn an_unbroken_run_counts_nothing() {
        let mut check = SeqCheck::after(Seq(10));
        seqs(&mut check, &[11, 12, 13]);
        assert_eq!(check.counts(), SeqCounts::default());
        assert_eq!(check.last(), Seq(13));
        assert!(check.has_all_until(Seq(13)));
        assert!(!check.has_all_until(Seq(14)));
        assert_eq!(check.missing_until(Seq(15)).missing, 2);
    }

    #[test]
    fn gaps_duplicates_and_late_arrivals_are_told_apart() {
        let mut check = SeqCheck::after(Seq(0));
        seqs(&mut check, &[1, 4, 2, 4, 1, 5]);
        assert_eq!(
            check.counts(),
            SeqCounts {
                gaps: 1,
                missing: 1,
                duplicates: 2,
                out_of_order: 1
            }
        );
        assert!(!check.has_all_until(Seq(5)));
        assert!(check.has_all_until(Seq(2)));
        check.observe(Seq(3));
        assert!(check.has_all_until(Seq(5)));
        assert_eq!(check.counts().missing, 0);
    }

    #[test]
    fn a_huge_jump_is_counted_without_remembering_every_seq() {
        let mut check = SeqCheck::after(Seq(0));
        check.observe(Seq(MAX_REMEMBERED * 3));
        assert_eq!(check.counts().missing, MAX_REMEMBERED * 3 - 1);
        assert_eq!(check.counts().gaps, 1);
    }
}
