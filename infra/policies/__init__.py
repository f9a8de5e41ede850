"""Custom checkov policies (loaded with --external-checks-dir infra/policies)."""
