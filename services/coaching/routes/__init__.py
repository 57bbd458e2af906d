"""HTTP routes of coaching-engine."""
