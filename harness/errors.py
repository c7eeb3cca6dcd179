"""Errors that the CLI turns into exit codes: 2 for bad input, 1 for anything else
(docs/ARCHITECTURE.md, "Exit codes")."""


class HarnessInputError(Exception):
    """Bad user input: a space file, a flag, a config value or missing dataset files.

    The message is one line that names the file or key and what was expected; the CLI prints
    it without a traceback and exits with code 2.
    """


class PluginError(HarnessInputError):
    """An installed plugin that cannot be used: its entry point does not load, its entry is of
    the wrong type, two distributions register its name, or its config section collides with
    another. The message names the entry point and its distribution (and the other party)."""


class TrialFailed(RuntimeError):
    """A trial that cannot go on (for example a loss that became NaN); its run ends FAILED."""
