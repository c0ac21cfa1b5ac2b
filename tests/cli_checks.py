"""Checks shared by the tests of commands: how a user-facing failure must look."""

from __future__ import annotations


def error_line(result, code: int) -> str:
    """The one ``error: ...`` line of a failed command, after asserting its exit code.

    Progress messages may come before it on stderr; the error is the last line, the only
    error line, never on stdout, and no traceback is printed.
    """
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and "Traceback" not in result.output and "error: " not in result.stdout, result.stderr
    return errors[0]
