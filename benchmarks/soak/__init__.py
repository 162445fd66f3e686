"""scripts/soak: calls kept up for half an hour, memory, descriptors, threads and tasks watched."""
