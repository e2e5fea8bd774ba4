"""The generated ``marrowscope.v1`` stubs, importable from an installed package or a checkout."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from marrowscope.v1 import analysis_pb2 as pb
    from marrowscope.v1 import analysis_pb2_grpc as pb_grpc
except ModuleNotFoundError:  # running from a source checkout that is not pip-installed
    sys.path.append(str(Path(__file__).resolve().parents[3] / "proto"))
    from marrowscope.v1 import analysis_pb2 as pb
    from marrowscope.v1 import analysis_pb2_grpc as pb_grpc

SERVICE_NAME = "marrowscope.v1.AnalysisService"

__all__ = ["SERVICE_NAME", "pb", "pb_grpc"]
