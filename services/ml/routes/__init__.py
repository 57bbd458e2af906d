"""HTTP routes of ml-services."""
