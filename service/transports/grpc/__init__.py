"""The gRPC transport: servicer (protobuf ⇄ domain), interceptors (auth, errors), server."""
