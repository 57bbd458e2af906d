"""Local stand-ins of services outside the project, speaking their real protocols."""
