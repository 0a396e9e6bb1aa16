"""Control plane: desired vs actual replicas, restarts, updates; local processes or Ray."""
