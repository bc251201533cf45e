"""REST gateway of the model router: maps HTTP requests onto the router's gRPC service."""
