//! Adversarial cases: checkpoint (filled in by its issue-16 work).
