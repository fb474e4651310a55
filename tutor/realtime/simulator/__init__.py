"""The bundled OpenAI Realtime (GA) simulator: offline demo upstream and test double.

    from tutor.realtime.simulator import RealtimeSimulator, SimulatorKnobs
    async with RealtimeSimulator(knobs=SimulatorKnobs(pace=0), port=0) as sim:
        sim.url  # ws://127.0.0.1:PORT/v1/realtime

See DESIGN section 4 and docs/internal-contracts.md.
"""

from .knobs import KnobError, SimulatorKnobs
from .server import RealtimeSimulator, SimulatorConnection

__all__ = ["KnobError", "RealtimeSimulator", "SimulatorConnection", "SimulatorKnobs"]
