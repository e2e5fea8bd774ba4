"""Generated protobuf/gRPC stubs of the marrowscope API (see proto/marrowscope/v1)."""
