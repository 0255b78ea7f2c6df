"""The synthetic world: what plays the car for the demo, the tests and the benchmarks.

It sits above the stages and below the command line: it writes drive logs a car would have
recorded (`generate`) and past weeks a running loop would have left in a lake
(`simulate_history`); no stage imports it.

>>> from sim import generate, simulate_history
>>> [path.name for path in generate("drives", logs=2, seconds=10, seed=1)]
['drive_0000.mcap', 'drive_0001.mcap']
>>> simulate_history(empty_lake, weeks=2, scenes_per_week=10).scenes
20
"""

from sim.generate import generate
from sim.history import simulate_history

__all__ = ["generate", "simulate_history"]
