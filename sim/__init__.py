"""The synthetic world: what plays the car for the demo, the tests and the benchmarks.

It sits above the stages and below the command line: it writes drive logs a car would have
recorded (`generate`) and past weeks a running loop would have left in a lake
(`simulate_history`); no stage imports it.

>>> from sim import generate, simulate_history
>>> generate("drives", logs=2, seconds=60, seed=1)            # doctest: +SKIP
>>> simulate_history("lake", weeks=8, scenes_per_week=60)     # doctest: +SKIP
"""

from sim.generate import generate
from sim.history import simulate_history

__all__ = ["generate", "simulate_history"]
