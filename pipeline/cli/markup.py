"""Text from users inside Rich output: `esc()` every name, path, config value and error message.

Rich reads `[...]` in printed strings as markup, so a token named `t[/x]`, a folder named `a[` or a
value `[nan, 0.2]` in an error was eaten, or crashed the command (`MarkupError`) after its work was
done: a token created and its secret never shown, a batch stopped by one bad file's message. Every
command that prints through Rich (here, `api/commands.py`, `models/*commands.py`, the batch runner)
passes such text through `esc`; literal markup around it stays ours.
"""

from __future__ import annotations

from rich.markup import escape


def esc(value: object) -> str:
    """`value` as text that Rich prints exactly as it is."""
    return escape(str(value))
