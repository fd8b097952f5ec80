//! Adversarial cases: optim (filled in by its issue-16 work).
