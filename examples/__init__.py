"""Example user strategies (see README, "Writing a strategy")."""
