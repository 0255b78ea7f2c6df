"""Ingest: drive logs (MCAP, ROS 1 bags, ROS 2 bags) into the lake's Parquet tables.

>>> from ingest import ingest
>>> ingest([drives], lake=empty_lake, workers=2).exit_code
0
"""

from ingest.clip import ClipSummary, export_clip
from ingest.embed import Embedder, FeatureEmbedder, add_embedding, load_embedder
from ingest.pipeline import FileResult, IngestSummary, discover, ingest, ingest_file
from ingest.readers import DecodedLog, read_log
from ingest.scenes import build_scenes

__all__ = [
    "ClipSummary",
    "DecodedLog",
    "Embedder",
    "FeatureEmbedder",
    "FileResult",
    "IngestSummary",
    "add_embedding",
    "build_scenes",
    "discover",
    "export_clip",
    "ingest",
    "ingest_file",
    "load_embedder",
    "read_log",
]
