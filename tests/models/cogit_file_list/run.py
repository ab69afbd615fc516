"""Cog integration test file_list_input: a list[File] input, each read like a file."""

from cog import BaseRunner, File


class Runner(BaseRunner):
    def run(self, files: list[File]) -> str:
        parts = []
        for f in files:
            content = f.read()
            if isinstance(content, bytes):
                content = content.decode("utf-8")
            parts.append(content)
        return "\n\n".join(parts)
