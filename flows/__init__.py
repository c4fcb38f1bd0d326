"""Conversation flows: pure steps from (state, event) to replies, commands and next state."""
