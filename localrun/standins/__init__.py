"""Local stand-ins for systems outside the project, speaking their real protocols."""
