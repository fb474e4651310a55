"""The realtime layer: the upstream client, response tracker, speech relay, browser wire codecs and the simulator. Imports no Django."""
