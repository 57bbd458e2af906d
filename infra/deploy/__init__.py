"""Operator commands around the Pulumi CLI: pre-flight checks, preview and up."""
