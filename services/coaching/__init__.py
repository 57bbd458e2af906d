"""coaching-engine (port 8003): AI coaching of agents from conversation transcripts."""
