"""The recipes' one error type (its own module so every recipe module can raise it, no circle)."""


class RecipeError(ValueError):
    """A recipe or its inputs are wrong in a way the user can fix; the message says how."""
