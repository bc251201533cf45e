"""The model router service: catalogue, routing and the gRPC server."""
