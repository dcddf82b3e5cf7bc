"""minivid: a small, readable kit for learning video generation at toy scale."""

__version__ = "0.1.0"
