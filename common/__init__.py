"""What the server and the worker share: configuration, data access, events, schemas."""
