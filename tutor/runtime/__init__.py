"""The live session of one learner: lifecycle, transcript, responses, probes and the handover."""
