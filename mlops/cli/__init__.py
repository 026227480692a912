"""The command line: parse, call one library function, render, exit. Only here: echo, prompt, sys.exit."""

import os

# pydantic looks for plugins in every installed distribution's entry points on first use, which costs
# about 50 ms per command; the CLI uses none. A user who wants plugins can set the variable themselves.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
