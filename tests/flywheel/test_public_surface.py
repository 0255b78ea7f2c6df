"""The public surface of the shared core and of ingest is pinned: it cannot drift silently."""

import flywheel
import ingest


def test_flywheel_surface():
    assert sorted(flywheel.__all__) == [
        "Config", "ConfigError", "FlywheelError", "InputError", "Lake", "LakeError", "Lineage",
        "QueryError", "TransientError", "UsageError", "VendorError", "__version__", "lineage",
        "load_config", "resolve",
    ]  # fmt: skip
    assert all(hasattr(flywheel, name) for name in flywheel.__all__)


def test_ingest_surface():
    assert sorted(ingest.__all__) == [
        "ClipSummary", "DecodedLog", "Embedder", "FeatureEmbedder", "FileResult",
        "IngestSummary", "add_embedding", "build_scenes", "discover", "export_clip", "ingest",
        "ingest_file", "load_embedder", "read_log",
    ]  # fmt: skip
    assert all(hasattr(ingest, name) for name in ingest.__all__)


def test_errors_survive_pickling_with_their_attributes():
    import pickle

    error = flywheel.InputError("drive.mcap: not a log", path="drive.mcap")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is flywheel.InputError
    assert (str(again), again.path) == ("drive.mcap: not a log", "drive.mcap")
