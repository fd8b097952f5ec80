//! Adversarial cases: engine (filled in by its issue-16 work).
