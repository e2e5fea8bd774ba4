"""marrowscope service: domain, pipeline, jobs, transports and the composition root."""

__version__ = "0.1.0"
