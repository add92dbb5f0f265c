"""Coming back after a restart: restoring state from the journal and warming indicators up."""
