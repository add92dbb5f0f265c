"""In-process simulated brokers with real broker semantics, on the runner's SimClock (race suite)."""

from tests.kit.broker_sim.alpaca import AlpacaSim
from tests.kit.broker_sim.core import SimBroker
from tests.kit.broker_sim.orders import SimOrder, SimParams
from tests.kit.broker_sim.ibkr import IbSim

__all__ = ["AlpacaSim", "IbSim", "SimBroker", "SimOrder", "SimParams"]
