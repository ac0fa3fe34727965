"""Refusals that list what differs: many problems as one line."""


def first_problem(problems: dict[str, str]) -> str:
    """`{name: what is wrong}` as one phrase for a one-line error: the first, and how many more."""
    name, reason = next(iter(problems.items()))
    return f"{name} {reason}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
