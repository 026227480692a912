"""The command line: parse, call one library function, render, exit. Only here: echo, prompt, sys.exit."""
