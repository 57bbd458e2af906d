"""HTTP routes of churn-orchestrator."""
