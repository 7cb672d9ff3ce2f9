"""Pure lifecycle logic, no Dagster imports: documents, chunking, models, storage, serving."""
