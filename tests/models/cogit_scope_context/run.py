"""Returns the request's context as seen through current_scope() (Cog's scope_context test)."""

from cog import BaseRunner, Input, current_scope


class Runner(BaseRunner):
    def run(self, expect_empty: str = Input(default="false")) -> str:
        ctx = current_scope().context
        if expect_empty == "true":
            return f"context_is_empty={len(ctx) == 0}"
        return ", ".join(f"{k}:{v}" for k, v in sorted(ctx.items()))
