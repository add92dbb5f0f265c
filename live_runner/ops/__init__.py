"""What operators see and use: the ops HTTP server and client, metrics, alerts, logs, the session story, the Dagster Pipes bridge."""
