"""Shared state of the project's own tests: scores printed at the end of the run."""
SCORES: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if SCORES:
        terminalreporter.write_sep("=", "suite power")
        for line in SCORES:
            terminalreporter.write_line(line)
