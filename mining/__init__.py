"""Mining: scene search over the lake (SQL with DuckDB, similarity with FAISS).

>>> import mining
>>> m = mining.open(lake)
>>> len(m.similar(scene, k=3, where="max_speed > 0"))
3
>>> m.save("unusual", m.rare(k=2)).name
'unusual.parquet'
"""

from mining.build import FLAT_MAX, KINDS, SHARD_SIZE, build_index, choose_kind, publish_index
from mining.gallery import Gallery
from mining.index import Index, load_index
from mining.miner import Miner, open
from mining.select import k_center
from mining.where import check as check_where

__all__ = [
    "FLAT_MAX",
    "KINDS",
    "SHARD_SIZE",
    "Gallery",
    "Index",
    "Miner",
    "build_index",
    "check_where",
    "choose_kind",
    "k_center",
    "load_index",
    "open",
    "publish_index",
]
