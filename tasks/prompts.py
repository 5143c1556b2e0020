"""The prompt form the generation tasks share (appendix B.1): a heading that counts the examples, the
numbered examples, the instruction, then the target's input; zero-shot, the instruction and the input."""

from __future__ import annotations

from collections.abc import Sequence

from icl_bench import Example, Task


def numbered_prompt(task: Task, context: Sequence[Example], target: Example, heading: str) -> str:
    """`task`'s prompt for `target` after `context`; `heading` opens it when there is a context."""
    instruction = task.instruction()  # type: ignore[attr-defined]  (the tasks that use this define one)
    if not context:
        return f"{instruction}\n{task.render_input(target)}"
    lines = [heading]
    for number, example in enumerate(context, 1):
        lines += [f"Example {number}:", f"{task.render_input(example)}{task.render_output(example)}"]
    return "\n".join([*lines, instruction, task.render_input(target)])
