"""Training path: export annotated slides as an nnU-Net dataset, train, register the model."""
