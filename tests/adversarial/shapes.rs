//! Adversarial cases: shapes (filled in by its issue-16 work).
