"""Cog integration tests complex_types and complex_types_list: a TypedDict input (there, anthropic's
MessageParam) and a list of them."""

from typing import TypedDict

from cog import BasePredictor, Input


class Message(TypedDict):
    content: str
    role: str


class Predictor(BasePredictor):
    def predict(
        self,
        messages: list[Message] = Input(description="Messages API."),
    ) -> str:
        return "Content: " + "-".join(m["content"] for m in messages)
