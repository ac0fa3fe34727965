"""Import OpenAI's `clip` package once, quietly.

The PyPI copy of `clip` imports `pkg_resources` only to compare torch versions; setuptools < 81
still ships it (pinned in pyproject.toml) but warns on import. That warning is noise for our users.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import clip
    from clip import model as clip_model

__all__ = ["clip", "clip_model"]
