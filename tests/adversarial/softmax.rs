//! Adversarial cases: softmax (filled in by its issue-16 work).
