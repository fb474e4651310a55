"""Placeholder until the tutor-session work lands (issue 5)."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class TutorConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.close(code=4401)
