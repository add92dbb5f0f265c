"""The durable journal: the event writer, its writer process and the projection that rebuilds state from it."""
