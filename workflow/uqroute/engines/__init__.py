"""Engines behind one interface (see :mod:`uqroute.engines.base`)."""

from .base import Completion, Conversation, Engine, EngineError, Message

__all__ = ["Completion", "Conversation", "Engine", "EngineError", "Message"]
