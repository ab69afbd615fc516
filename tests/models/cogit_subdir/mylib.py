"""A helper module at the project root, imported by my-subdir/run.py."""


def concat(a: str, b: str) -> str:
    return a + " " + b
