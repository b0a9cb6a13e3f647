"""The garbage collector around a CLI process's start-up and exit.

A command's start-up makes tens of thousands of objects that live as long as
the process (modules, classes, pydantic's schemas) and almost no garbage, yet
the collector walks them again and again: about a hundred young collections
while the engine is imported, each later full collection over all of them,
and a last walk while the interpreter shuts down. Together that is some
60-100 ms of a `parallel-orch run`, and 10-40 ms of a client command's exit.

So the console script holds the collector off while a command starts
(:func:`hold`), and once the command is about to do its long part (the event
loop, :func:`release`) moves everything made so far into the permanent
generation (:func:`gc.freeze`) and lets the collector run again for what is
made from then on. A long-lived command freezes again once it is up
(:func:`settled`: the daemon, whose engine is imported and started inside the
loop). At exit, :func:`freeze_for_exit` spares the shutdown's walk.
Only the console script does this: ``app`` called in another process (a test's
``CliRunner``, a user's script) leaves that process's collector alone.
"""

from __future__ import annotations

import gc

_held = False
_ours = False  # the console script runs this process: its collector is ours to tune


def hold() -> None:
    """No collections while the command starts (the console script's first step)."""
    global _held, _ours
    _ours = True
    if gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    """Start-up is over: what it made stays out of every later collection, and the
    collector runs again. Does nothing unless :func:`hold` held it."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


def settled() -> None:
    """A long-lived command is up: what its start made (the engine, the store, the pool)
    stays out of the full collections of the hours it serves. Only in the console script."""
    if _ours:
        gc.freeze()


def freeze_for_exit() -> None:
    """Objects left at exit are freed by reference counts; the shutdown need not walk them
    for cycles first (a last ~30 ms of a run's process). A command that never reached its
    loop (a client command, ``--help``) gets its collector back as it found it."""
    global _held
    gc.freeze()
    if _held:
        _held = False
        gc.enable()
