"""Market data inside the runner: the bar router (DataManager) and the sample data set."""
