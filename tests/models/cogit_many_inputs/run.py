"""Many kinds of input in one signature (Cog's many_inputs and predict_many_inputs_image tests)."""

from cog import BaseRunner, Input, Path


class Runner(BaseRunner):
    def run(
        self,
        no_default: str,
        default_without_input: str = "default",
        input_with_default: int = Input(default=10),
        path: Path = Input(description="Some path"),
        image: Path = Input(description="Some path"),
        choices: str = Input(choices=["foo", "bar"]),
        int_choices: int = Input(description="hello", choices=[3, 4, 5]),
    ) -> str:
        contents = path.read_text().strip()
        extension = str(image).rsplit(".", 1)[-1]
        parts = [no_default, default_without_input, str(input_with_default * 2), contents, extension, choices]
        return " ".join(parts + [str(int_choices * 2)])
