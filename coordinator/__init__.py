"""Server side of federated training (planning, aggregation, persistence); built in the coordinator issue."""
